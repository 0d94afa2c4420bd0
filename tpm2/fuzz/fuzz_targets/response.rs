//! Every TPM response this crate reads, from arbitrary bytes: the first byte picks the
//! command, the rest is what the "TPM" answers (to every command the operation sends, so
//! retries and multi-exchange reads see it again). Nothing may panic; an answer that is
//! accepted must be consistent with what was asked. The last selector reads the input
//! as a sealed blob and its public area.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tpm2::commands::Handle;
use tpm2::object::SealedPublic;
use tpm2::transport::{Transport, TransportError};
use tpm2::{PcrSelection, Sealed, Tpm};

/// A TPM that answers everything with the same bytes.
struct Replay<'a>(&'a [u8]);

impl Transport for Replay<'_> {
    fn transact(&mut self, _command: &[u8]) -> Result<Vec<u8>, TransportError> {
        Ok(self.0.to_vec())
    }

    fn name(&self) -> &str {
        "replay"
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, response)) = data.split_first() else {
        return;
    };
    let mut tpm = Tpm::new(Replay(response));
    let pcrs = PcrSelection::new(&[7, 15]).expect("valid PCRs");
    match selector % 12 {
        0 => {
            if let Ok(r) = tpm.get_random(40) {
                assert_eq!(r.len(), 40);
            }
        }
        1 => {
            if let Ok(v) = tpm.pcr_read(pcrs) {
                assert_eq!(v.selection(), pcrs);
            }
        }
        2 => {
            let _ = tpm.create_storage_primary();
        }
        3 => {
            let _ = tpm.create(Handle(0x8000_0000), &[0; 4], b"secret");
        }
        4 => {
            let _ = tpm.load(Handle(0x8000_0000), &[1; 4], &[2; 4]);
        }
        5 => {
            let _ = tpm.unseal(Handle(0x8000_0001), Handle(0x0300_0000));
        }
        6 => {
            let _ = tpm.start_policy_session(1, &[0; 16]);
        }
        7 => {
            let _ = tpm.policy_pcr(Handle(0x0300_0000), pcrs);
        }
        8 => {
            let _ = tpm.policy_get_digest(Handle(0x0300_0000));
        }
        9 => {
            let _ = tpm.pcr_extend(15, &[0; 32]);
        }
        10 => {
            let _ = tpm.flush_context(0x8000_0000);
        }
        _ => {
            if let Ok(s) = Sealed::from_blob(response, pcrs, [0; 32]) {
                assert_eq!(s.blob().expect("re-marshals"), response);
                let _ = SealedPublic::parse(&s.public);
            }
        }
    }
});
