//! The TPM commands this crate sends (TCG TPM 2.0 Library, Part 3 "Commands"; the section
//! of each is named on its method), each one exchange on a [`Transport`].
//!
//! No command uses an HMAC or encrypting session: authorizations are the empty password
//! (`TPM_RS_PW`: owner hierarchy, storage key, PCRs) or an unsalted, unbound policy
//! session with no HMAC. Parameters therefore cross the bus in clear, the sealed secret
//! included (docs/tpm2.md, "What is not done").

use zeroize::Zeroizing;

use crate::error::{Error, Malformed};
use crate::object;
use crate::policy::{Digest, PcrSelection, PcrValues, ALG_SHA256};
use crate::rc::ResponseCode;
use crate::transport::{Transport, TransportError};
use crate::wire::{self, Auth, Command, Reader, ResponseError, Writer};

/// `TPM_RH_OWNER`: the storage hierarchy.
pub const RH_OWNER: u32 = 0x4000_0001;
/// `TPM_RH_NULL`.
pub const RH_NULL: u32 = 0x4000_0007;
/// `TPM_SE_POLICY` and `TPM_SE_TRIAL` session types.
pub const SE_POLICY: u8 = 0x01;
pub const SE_TRIAL: u8 = 0x03;

/// A TPM reached through a transport.
#[derive(Debug)]
pub struct Tpm<T> {
    transport: T,
}

/// A transient object handle the TPM assigned (flush it with [`Tpm::flush_context`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handle(pub u32);

/// A loaded primary key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Primary {
    pub handle: Handle,
    /// Its `TPMT_PUBLIC` as the TPM returned it (with the unique point).
    pub public: Vec<u8>,
    /// Its name, as the TPM computed it.
    pub name: Vec<u8>,
}

/// A freshly created object: both halves as the TPM returned them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// `TPM2B_PRIVATE`'s contents (encrypted and integrity-protected by the parent).
    pub private: Vec<u8>,
    /// `TPMT_PUBLIC`.
    pub public: Vec<u8>,
}

fn too_large(what: &'static str, len: usize) -> Error {
    Error::TooLarge {
        what,
        len,
        max: usize::from(u16::MAX),
    }
}

impl<T: Transport> Tpm<T> {
    pub fn new(transport: T) -> Tpm<T> {
        Tpm { transport }
    }

    /// The device name errors use.
    pub fn device(&self) -> &str {
        self.transport.name()
    }

    fn malformed(&self, command: Command, error: Malformed) -> Error {
        Error::Response {
            device: self.device().to_owned(),
            command,
            error,
        }
    }

    /// One command: returns the handles and the parameter bytes of a successful
    /// response. A TPM that answers `TPM_RC_RETRY`, `TPM_RC_YIELDED` or `TPM_RC_TESTING`
    /// asks for the same command again (Part 2, 6.6.3); this resends it a bounded number
    /// of times, as tpm2-tss does.
    fn run(
        &mut self,
        command: Command,
        handles: &[u32],
        auths: &[Auth],
        params: &[u8],
        n_handles: usize,
    ) -> Result<(Vec<u32>, Vec<u8>), Error> {
        let bytes = Zeroizing::new(wire::command(command, handles, auths, params));
        let mut tries = 0;
        loop {
            match self.exchange(command, &bytes, n_handles, !auths.is_empty()) {
                Err(Error::Tpm { rc, .. }) if RESEND.contains(&rc.0) && tries < MAX_RESENDS => {
                    tries += 1;
                }
                r => return r,
            }
        }
    }

    fn exchange(
        &mut self,
        command: Command,
        bytes: &[u8],
        n_handles: usize,
        with_sessions: bool,
    ) -> Result<(Vec<u32>, Vec<u8>), Error> {
        let result = self.transport.transact(bytes);
        let response = Zeroizing::new(match result {
            Ok(r) => r,
            Err(TransportError::Send(source)) => {
                return Err(Error::Send {
                    device: self.device().to_owned(),
                    command,
                    source,
                })
            }
            Err(TransportError::Receive(source)) => {
                return Err(Error::Receive {
                    device: self.device().to_owned(),
                    command,
                    source,
                })
            }
        });
        match wire::parse_response(&response, n_handles, with_sessions) {
            Ok(r) => Ok((r.handles, r.params.to_vec())),
            Err(ResponseError::Code(rc)) => Err(Error::Tpm {
                device: self.device().to_owned(),
                command,
                rc,
            }),
            Err(ResponseError::Malformed(error)) => Err(self.malformed(command, error)),
        }
    }

    /// TPM2_GetRandom (Part 3, 16.1): `n` bytes from the TPM's generator.
    pub fn get_random(&mut self, n: usize) -> Result<Zeroizing<Vec<u8>>, Error> {
        let mut out = Zeroizing::new(Vec::with_capacity(n));
        while out.len() < n {
            let want = u16::try_from(n - out.len()).unwrap_or(u16::MAX).min(32);
            let mut w = Writer::new();
            w.u16(want);
            let (_, params) = self.run(Command::GetRandom, &[], &[], &w.into_bytes(), 0)?;
            let params = Zeroizing::new(params);
            let got =
                parse_get_random(&params).map_err(|e| self.malformed(Command::GetRandom, e))?;
            if got.is_empty() || got.len() > usize::from(want) {
                return Err(self.malformed(
                    Command::GetRandom,
                    Malformed {
                        what: "randomBytes",
                        offset: 0,
                        problem: "is empty or longer than asked for",
                    },
                ));
            }
            out.extend_from_slice(got);
        }
        Ok(out)
    }

    /// TPM2_PCR_Read (Part 3, 22.4) of the sha256 bank: the values of `selection`. The
    /// TPM returns at most 8 values an exchange, so this asks again for the rest.
    pub fn pcr_read(&mut self, selection: PcrSelection) -> Result<PcrValues, Error> {
        let mut values = PcrValues::new();
        let mut left = selection.mask();
        while left != 0 {
            let mut w = Writer::new();
            PcrSelection::from_mask(left)?.marshal(&mut w);
            let (_, params) = self.run(Command::PcrRead, &[], &[], &w.into_bytes(), 0)?;
            let (got, digests) =
                parse_pcr_read(&params).map_err(|e| self.malformed(Command::PcrRead, e))?;
            if got.mask() & !left != 0 || got.indexes().count() != digests.len() {
                return Err(self.malformed(
                    Command::PcrRead,
                    Malformed {
                        what: "pcrValues",
                        offset: 0,
                        problem: "do not match the selection",
                    },
                ));
            }
            if got.is_empty() {
                let index = PcrSelection::from_mask(left)?.indexes().next().unwrap_or(0);
                return Err(Error::PcrMissing {
                    device: self.device().to_owned(),
                    index,
                });
            }
            for (i, d) in got.indexes().zip(digests) {
                values.set(i, d)?;
            }
            left &= !got.mask();
        }
        Ok(values)
    }

    /// TPM2_PCR_Extend (Part 3, 22.2) of PCR `index`'s sha256 bank with `digest`
    /// (PCR authValues are empty).
    pub fn pcr_extend(&mut self, index: u32, digest: &Digest) -> Result<(), Error> {
        PcrSelection::new(&[index])?;
        let mut w = Writer::new();
        w.u32(1).u16(ALG_SHA256).bytes(digest);
        self.run(
            Command::PcrExtend,
            &[index],
            &[Auth::EmptyPassword],
            &w.into_bytes(),
            0,
        )?;
        Ok(())
    }

    /// TPM2_CreatePrimary (Part 3, 24.1) in the owner hierarchy with `template` (a
    /// `TPMT_PUBLIC`), an empty authValue and no creation PCRs.
    pub fn create_primary(&mut self, template: &[u8]) -> Result<Primary, Error> {
        let mut w = Writer::new();
        w.u16(4).u16(0).u16(0); // TPM2B_SENSITIVE_CREATE: empty userAuth, empty data
        w.tpm2b(template)
            .map_err(|e| too_large("public template", e.0))?;
        w.u16(0); // outsideInfo
        w.u32(0); // creationPCR: none
        let (handles, params) = self.run(
            Command::CreatePrimary,
            &[RH_OWNER],
            &[Auth::EmptyPassword],
            &w.into_bytes(),
            1,
        )?;
        let handle = Handle(handles.first().copied().unwrap_or(0));
        match parse_create_primary(&params) {
            Ok((public, name)) => Ok(Primary {
                handle,
                public,
                name,
            }),
            Err(e) => {
                let err = self.malformed(Command::CreatePrimary, e);
                // Best effort: the error above is the one to report.
                let _ = self.flush_context(handle.0);
                Err(err)
            }
        }
    }

    /// The storage primary key systemd 252 uses ([`object::primary_ecc_template`]).
    pub fn create_storage_primary(&mut self) -> Result<Primary, Error> {
        self.create_primary(&object::primary_ecc_template())
    }

    /// TPM2_StartAuthSession (Part 3, 11.1): an unsalted, unbound policy (or trial)
    /// session with SHA-256 and no parameter encryption. `nonce_caller` must be 16 to 32
    /// bytes.
    pub fn start_policy_session(
        &mut self,
        session_type: u8,
        nonce_caller: &[u8],
    ) -> Result<Handle, Error> {
        let mut w = Writer::new();
        w.tpm2b(nonce_caller)
            .map_err(|e| too_large("nonceCaller", e.0))?;
        w.u16(0) // encryptedSalt: none
            .u8(session_type)
            .u16(ALG_NULL_SYM) // symmetric: none
            .u16(ALG_SHA256);
        let (handles, params) = self.run(
            Command::StartAuthSession,
            &[RH_NULL, RH_NULL],
            &[],
            &w.into_bytes(),
            1,
        )?;
        let handle = Handle(handles.first().copied().unwrap_or(0));
        let mut r = Reader::new(&params);
        let checked = r
            .tpm2b("nonceTPM")
            .and_then(|_| r.finish("response parameters"));
        if let Err(e) = checked {
            let err = self.malformed(Command::StartAuthSession, e);
            let _ = self.flush_context(handle.0);
            return Err(err);
        }
        Ok(handle)
    }

    /// TPM2_PolicyPCR (Part 3, 23.7) on `session` with the current values of `selection`
    /// (an empty pcrDigest: the TPM uses what the PCRs hold now).
    pub fn policy_pcr(&mut self, session: Handle, selection: PcrSelection) -> Result<(), Error> {
        let mut w = Writer::new();
        w.u16(0);
        selection.marshal(&mut w);
        let (_, params) = self.run(Command::PolicyPcr, &[session.0], &[], &w.into_bytes(), 0)?;
        Reader::new(&params)
            .finish("response parameters")
            .map_err(|e| self.malformed(Command::PolicyPcr, e))
    }

    /// TPM2_PolicyGetDigest (Part 3, 23.19): the session's current policy digest.
    pub fn policy_get_digest(&mut self, session: Handle) -> Result<Vec<u8>, Error> {
        let (_, params) = self.run(Command::PolicyGetDigest, &[session.0], &[], &[], 0)?;
        let mut r = Reader::new(&params);
        let d = r
            .tpm2b("policyDigest")
            .and_then(|d| r.finish("response parameters").map(|()| d.to_vec()))
            .map_err(|e| self.malformed(Command::PolicyGetDigest, e))?;
        Ok(d)
    }

    /// TPM2_Create (Part 3, 12.1) under `parent`: a sealed data object holding `data`
    /// with the public area `template`. The data is sent in clear.
    pub fn create(
        &mut self,
        parent: Handle,
        template: &[u8],
        data: &[u8],
    ) -> Result<Created, Error> {
        let mut sensitive = Writer::new();
        sensitive.u16(0); // userAuth: empty
        sensitive
            .tpm2b(data)
            .map_err(|e| too_large("sealed data", e.0))?;
        let sensitive = Zeroizing::new(sensitive.into_bytes());
        let mut w = Writer::new();
        w.tpm2b(&sensitive)
            .map_err(|e| too_large("sealed data", e.0))?;
        w.tpm2b(template)
            .map_err(|e| too_large("public template", e.0))?;
        w.u16(0).u32(0); // outsideInfo, creationPCR
        let params = Zeroizing::new(w.into_bytes());
        let (_, params) = self.run(
            Command::Create,
            &[parent.0],
            &[Auth::EmptyPassword],
            &params,
            0,
        )?;
        parse_create(&params).map_err(|e| self.malformed(Command::Create, e))
    }

    /// TPM2_Load (Part 3, 12.2) of an object's two halves under `parent`.
    pub fn load(&mut self, parent: Handle, private: &[u8], public: &[u8]) -> Result<Handle, Error> {
        let mut w = Writer::new();
        w.tpm2b(private)
            .map_err(|e| too_large("TPM2B_PRIVATE", e.0))?;
        w.tpm2b(public)
            .map_err(|e| too_large("TPM2B_PUBLIC", e.0))?;
        let (handles, params) = self.run(
            Command::Load,
            &[parent.0],
            &[Auth::EmptyPassword],
            &w.into_bytes(),
            1,
        )?;
        let handle = Handle(handles.first().copied().unwrap_or(0));
        let mut r = Reader::new(&params);
        let checked = r
            .tpm2b("name")
            .and_then(|_| r.finish("response parameters"));
        if let Err(e) = checked {
            let err = self.malformed(Command::Load, e);
            let _ = self.flush_context(handle.0);
            return Err(err);
        }
        Ok(handle)
    }

    /// TPM2_Unseal (Part 3, 12.7) of `object`, authorised by the policy `session` (which
    /// the TPM flushes when the command succeeds).
    pub fn unseal(&mut self, object: Handle, session: Handle) -> Result<Zeroizing<Vec<u8>>, Error> {
        let (_, params) = self.run(
            Command::Unseal,
            &[object.0],
            &[Auth::Policy(session.0)],
            &[],
            0,
        )?;
        let params = Zeroizing::new(params);
        let mut r = Reader::new(&params);
        let data = r
            .tpm2b("outData")
            .and_then(|d| r.finish("response parameters").map(|()| d))
            .map_err(|e| self.malformed(Command::Unseal, e))?;
        Ok(Zeroizing::new(data.to_vec()))
    }

    /// TPM2_FlushContext (Part 3, 28.4): unloads a transient object or a session.
    pub fn flush_context(&mut self, handle: u32) -> Result<(), Error> {
        let mut w = Writer::new();
        w.u32(handle);
        self.run(Command::FlushContext, &[], &[], &w.into_bytes(), 0)?;
        Ok(())
    }
}

/// The warnings that ask for the command to be sent again: `TPM_RC_RETRY`,
/// `TPM_RC_YIELDED`, `TPM_RC_TESTING`.
const RESEND: [u32; 3] = [0x922, 0x908, 0x90A];
const MAX_RESENDS: u32 = 16;

/// `TPM_ALG_NULL` as a `TPMT_SYM_DEF` (no key bits or mode follow).
const ALG_NULL_SYM: u16 = object::ALG_NULL;

/// The parameters of a TPM2_GetRandom response: `randomBytes`.
pub fn parse_get_random(params: &[u8]) -> Result<&[u8], Malformed> {
    let mut r = Reader::new(params);
    let b = r.tpm2b("randomBytes")?;
    r.finish("response parameters")?;
    Ok(b)
}

/// The parameters of a TPM2_PCR_Read response: the sha256 selection it answered and
/// the digests, in ascending index order.
pub fn parse_pcr_read(params: &[u8]) -> Result<(PcrSelection, Vec<Digest>), Malformed> {
    let mut r = Reader::new(params);
    r.u32("pcrUpdateCounter")?;
    let selection = PcrSelection::unmarshal(&mut r)?;
    let count = r.u32("TPML_DIGEST count")?;
    if count > 8 {
        return Err(Malformed {
            what: "TPML_DIGEST count",
            offset: r.offset(),
            problem: "more than 8 digests",
        });
    }
    let mut digests = Vec::with_capacity(8);
    for _ in 0..count {
        digests.push(r.tpm2b_array::<32>("TPML_DIGEST digest")?);
    }
    r.finish("response parameters")?;
    Ok((selection, digests))
}

/// The parameters of a TPM2_CreatePrimary response: the `TPMT_PUBLIC` and the name.
pub fn parse_create_primary(params: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Malformed> {
    let mut r = Reader::new(params);
    let public = r.tpm2b("outPublic")?.to_vec();
    skip_creation_outputs(&mut r)?;
    let name = r.tpm2b("name")?.to_vec();
    r.finish("response parameters")?;
    Ok((public, name))
}

/// The parameters of a TPM2_Create response: the private and public halves.
pub fn parse_create(params: &[u8]) -> Result<Created, Malformed> {
    let mut r = Reader::new(params);
    let private = r.tpm2b("outPrivate")?.to_vec();
    let public = r.tpm2b("outPublic")?.to_vec();
    skip_creation_outputs(&mut r)?;
    r.finish("response parameters")?;
    Ok(Created { private, public })
}

/// creationData, creationHash and the creation ticket, which this crate does not use.
fn skip_creation_outputs(r: &mut Reader<'_>) -> Result<(), Malformed> {
    r.tpm2b("creationData")?;
    r.tpm2b("creationHash")?;
    r.u16("creationTicket tag")?;
    r.u32("creationTicket hierarchy")?;
    r.tpm2b("creationTicket digest")?;
    Ok(())
}

/// Whether `e` is the TPM refusing an object's policy (`TPM_RC_POLICY_FAIL`): the PCRs
/// are not what the object was sealed to.
pub fn is_policy_fail(e: &Error) -> bool {
    e.response_code()
        .is_some_and(|rc: ResponseCode| rc.base() == ResponseCode::POLICY_FAIL)
}
