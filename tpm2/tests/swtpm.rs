//! Tests against a real software TPM and the peer tools, run at test time: each test
//! starts its own `swtpm socket` (swtpm, installed by scripts/setup) in a temporary
//! directory and talks to it through the crate's socket transport; `tpm2-tools` and
//! `systemd-cryptenroll` reach the same swtpm through tpm2-tss's swtpm TCTI
//! (`swtpm:path=<socket>`, control channel `<socket>.ctrl`). swtpm serves one connection
//! at a time and has no resource manager, so each test drops its connection before a
//! tool runs and flushes what the tools left loaded.
//!
//! LUKS2 images are files: `cryptsetup luksFormat`, `luksDump`, `token import` and
//! `open --test-passphrase` need no device-mapper (the host kernel has none).

// Test harness: panicking on a failed step is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use luks2::json::Value;
use luks2::{KdfParams, Luks2};
use tpm2::commands::{is_policy_fail, Primary};
use tpm2::object::{self, SealedPublic};
use tpm2::rc::ResponseCode;
use tpm2::token::{self, Tpm2Token};
use tpm2::transport::Socket;
use tpm2::{PcrSelection, PcrValues, Sealed, Tpm, LOCK_PCR, SECURE_BOOT_PCR};

/// One swtpm process with its state and sockets in a temporary directory.
struct Swtpm {
    dir: tempfile::TempDir,
    child: Child,
}

impl Swtpm {
    fn start() -> Swtpm {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("sock");
        let child = Command::new("swtpm")
            .arg("socket")
            .arg("--tpm2")
            .arg("--tpmstate")
            .arg(format!("dir={}", dir.path().display()))
            .arg("--server")
            .arg(format!("type=unixio,path={}", sock.display()))
            .arg("--ctrl")
            .arg(format!("type=unixio,path={}.ctrl", sock.display()))
            .args(["--flags", "not-need-init,startup-clear"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running swtpm (scripts/setup installs swtpm)");
        let mut s = Swtpm { dir, child };
        // Ready when the data socket accepts a connection; bounded.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if UnixStream::connect(&sock).is_ok() {
                return s;
            }
            if let Some(status) = s.child.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = s.child.stderr.take() {
                    std::io::Read::read_to_string(&mut e, &mut err).unwrap();
                }
                panic!("swtpm exited with {status}: {err}");
            }
            assert!(
                Instant::now() < deadline,
                "swtpm did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn tcti(&self) -> String {
        format!("swtpm:path={}", self.sock().display())
    }

    fn tpm(&self) -> Tpm<Socket> {
        Tpm::new(Socket::connect(&self.sock()).unwrap())
    }

    /// Runs a tpm2-tools command against this swtpm; it must succeed.
    fn tool(&self, args: &[&str]) -> Output {
        let out = self.run_tool(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn run_tool(&self, args: &[&str]) -> Output {
        Command::new(args[0])
            .args(&args[1..])
            .env("TPM2TOOLS_TCTI", self.tcti())
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("running {} (tpm2-tools): {e}", args[0]))
    }

    /// Flushes the transient objects and sessions tpm2-tools left loaded (no resource
    /// manager in between).
    fn flush_tools(&self) {
        self.tool(&["tpm2_flushcontext", "-t"]);
        self.tool(&["tpm2_flushcontext", "-s"]);
    }

    /// tpm2-tools' storage primary with systemd's template, saved as `primary.ctx`.
    fn tools_primary(&self) {
        self.tool(&[
            "tpm2_createprimary",
            "-C",
            "o",
            "-G",
            "ecc256:aes128cfb",
            "-a",
            "restricted|decrypt|fixedtpm|fixedparent|sensitivedataorigin|userwithauth",
            "-c",
            "primary.ctx",
        ]);
        self.flush_tools();
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        // The child is ours; killing it by its handle ends only this swtpm.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn random(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    luks2::crypto::fill_random(&mut b).unwrap();
    b
}

/// Stands in for the firmware: measures something into PCR 7, so it is not all zero.
fn measure_secure_boot(tpm: &mut Tpm<Socket>) {
    tpm2::extend_pcr(tpm, SECURE_BOOT_PCR, b"SecureBoot=1 PK KEK db dbx").unwrap();
}

fn tpm2b(b: &[u8]) -> Vec<u8> {
    let mut v = u16::try_from(b.len()).unwrap().to_be_bytes().to_vec();
    v.extend_from_slice(b);
    v
}

fn untpm2b(b: &[u8]) -> Vec<u8> {
    let n = usize::from(u16::from_be_bytes([b[0], b[1]]));
    assert_eq!(b.len(), n + 2, "not one TPM2B");
    b[2..].to_vec()
}

#[test]
fn our_seal_unseals_with_tpm2_tools_and_theirs_with_ours() {
    let t = Swtpm::start();
    let ours = random(32);
    {
        let mut tpm = t.tpm();
        measure_secure_boot(&mut tpm);
        let values = tpm.pcr_read(PcrSelection::new(&[7]).unwrap()).unwrap();
        let sealed = tpm2::seal(&mut tpm, &ours, &values).unwrap();
        fs::write(t.path("ours.priv"), tpm2b(&sealed.private)).unwrap();
        fs::write(t.path("ours.pub"), tpm2b(&sealed.public)).unwrap();
        // Ours unseals it too.
        assert_eq!(*tpm2::unseal(&mut tpm, &sealed).unwrap(), ours);
    }
    t.tools_primary();
    t.tool(&[
        "tpm2_load",
        "-C",
        "primary.ctx",
        "-u",
        "ours.pub",
        "-r",
        "ours.priv",
        "-c",
        "ours.ctx",
    ]);
    t.flush_tools();
    t.tool(&[
        "tpm2_unseal",
        "-c",
        "ours.ctx",
        "-p",
        "pcr:sha256:7",
        "-o",
        "ours.out",
    ]);
    assert_eq!(fs::read(t.path("ours.out")).unwrap(), ours);

    // The other way: tpm2-tools seals to PCR 7, ours unseals.
    let theirs = random(32);
    fs::write(t.path("theirs.in"), &theirs).unwrap();
    t.tool(&[
        "tpm2_createpolicy",
        "--policy-pcr",
        "-l",
        "sha256:7",
        "-L",
        "theirs.policy",
    ]);
    t.tool(&[
        "tpm2_create",
        "-C",
        "primary.ctx",
        "-L",
        "theirs.policy",
        "-i",
        "theirs.in",
        "-a",
        "fixedtpm|fixedparent",
        "-u",
        "theirs.pub",
        "-r",
        "theirs.priv",
    ]);
    t.flush_tools();
    let sealed = Sealed {
        private: untpm2b(&fs::read(t.path("theirs.priv")).unwrap()),
        public: untpm2b(&fs::read(t.path("theirs.pub")).unwrap()),
        pcrs: PcrSelection::new(&[7]).unwrap(),
        policy_hash: fs::read(t.path("theirs.policy"))
            .unwrap()
            .try_into()
            .unwrap(),
    };
    let mut tpm = t.tpm();
    assert_eq!(*tpm2::unseal(&mut tpm, &sealed).unwrap(), theirs);
}

#[test]
fn policy_digests_agree_in_software_in_the_tpm_and_in_tpm2_tools() {
    let t = Swtpm::start();
    for (pcrs, tools_list) in [(&[7][..], "sha256:7"), (&[7, 15][..], "sha256:7,15")] {
        let selection = PcrSelection::new(pcrs).unwrap();
        let (computed, trial) = {
            let mut tpm = t.tpm();
            measure_secure_boot(&mut tpm);
            let values = tpm.pcr_read(selection).unwrap();
            (
                values.policy_digest(),
                tpm2::trial_policy_digest(&mut tpm, selection).unwrap(),
            )
        };
        assert_eq!(trial, computed, "TPM trial session, PCRs {pcrs:?}");
        t.tool(&[
            "tpm2_createpolicy",
            "--policy-pcr",
            "-l",
            tools_list,
            "-L",
            "policy.bin",
        ]);
        assert_eq!(
            fs::read(t.path("policy.bin")).unwrap(),
            computed,
            "tpm2_createpolicy, PCRs {pcrs:?}"
        );
        t.flush_tools();
    }
}

#[test]
fn storage_primary_is_the_one_tpm2_tools_and_systemd_make() {
    let t = Swtpm::start();
    let primary = {
        let mut tpm = t.tpm();
        let p = tpm.create_storage_primary().unwrap();
        tpm.flush_context(p.handle.0).unwrap();
        // Deterministic: the same again.
        let again = tpm.create_storage_primary().unwrap();
        tpm.flush_context(again.handle.0).unwrap();
        assert_eq!(
            again,
            Primary {
                handle: again.handle,
                ..p.clone()
            }
        );
        p
    };
    // The TPM's name is nameAlg || SHA-256(public area), as computed here.
    assert_eq!(primary.name, object::name(&primary.public));
    // The public area is the template with the unique point filled in (two 32-byte
    // coordinates).
    let template = object::primary_ecc_template();
    assert_eq!(
        primary.public[..template.len() - 4],
        template[..template.len() - 4]
    );
    assert_eq!(primary.public.len(), template.len() + 64);
    t.tools_primary();
    t.tool(&[
        "tpm2_readpublic",
        "-c",
        "primary.ctx",
        "-o",
        "primary.pub",
        "-n",
        "primary.name",
    ]);
    t.flush_tools();
    assert_eq!(
        untpm2b(&fs::read(t.path("primary.pub")).unwrap()),
        primary.public
    );
    assert_eq!(fs::read(t.path("primary.name")).unwrap(), primary.name);
    // systemd's: systemd_cryptenroll_token_unlocks_with_ours loads a blob that
    // systemd-cryptenroll sealed under its primary beneath ours.
}

#[test]
fn a_changed_pcr_7_a_damaged_blob_and_the_lock_pcr_refuse_to_unseal() {
    let t = Swtpm::start();
    let mut tpm = t.tpm();
    measure_secure_boot(&mut tpm);
    let secret = random(32);
    let values = tpm2::boot_pcr_values(&mut tpm).unwrap();
    assert_eq!(values.selection().mask(), (1 << 7) | (1 << 15));
    let sealed = tpm2::seal(&mut tpm, &secret, &values).unwrap();
    assert_eq!(
        SealedPublic::parse(&sealed.public).unwrap().attributes,
        0x12
    );
    assert_eq!(*tpm2::unseal(&mut tpm, &sealed).unwrap(), secret);

    // Every byte of the blob flipped: refused every time, by the parser or the TPM.
    let blob = sealed.blob().unwrap();
    let private_end = 2 + sealed.private.len();
    let mut tpm_refusals = 0;
    for i in 0..blob.len() {
        let mut bad = blob.clone();
        bad[i] ^= 0x01;
        let Ok(damaged) = Sealed::from_blob(&bad, sealed.pcrs, sealed.policy_hash) else {
            continue;
        };
        let err = tpm2::unseal(&mut tpm, &damaged)
            .map(|_| ())
            .expect_err(&format!("a flip at byte {i} unsealed"));
        if (2..private_end).contains(&i) {
            // Inside the private area only the TPM can tell.
            assert!(err.response_code().is_some(), "byte {i}: {err}");
        }
        if err.response_code().is_some() {
            tpm_refusals += 1;
        }
    }
    assert!(tpm_refusals >= sealed.private.len(), "{tpm_refusals}");
    // Nothing was left loaded by the refusals: the sealed object still unseals.
    assert_eq!(*tpm2::unseal(&mut tpm, &sealed).unwrap(), secret);

    // PID 1's lock: after extending PCR 15 the same boot cannot unseal again.
    tpm2::extend_pcr(&mut tpm, LOCK_PCR, b"liftoff: DATA unlocked").unwrap();
    let err = tpm2::unseal(&mut tpm, &sealed).unwrap_err();
    assert!(is_policy_fail(&err), "{err}");

    // A PCR 7 change (Secure Boot off, other keys) is refused with TPM_RC_POLICY_FAIL.
    let t2 = Swtpm::start();
    let mut tpm = t2.tpm();
    measure_secure_boot(&mut tpm);
    let values = tpm2::boot_pcr_values(&mut tpm).unwrap();
    let sealed = tpm2::seal(&mut tpm, &secret, &values).unwrap();
    tpm2::extend_pcr(&mut tpm, SECURE_BOOT_PCR, b"SecureBoot=0").unwrap();
    let err = tpm2::unseal(&mut tpm, &sealed).unwrap_err();
    assert_eq!(
        err.response_code().map(ResponseCode::base),
        Some(ResponseCode::POLICY_FAIL)
    );
    let text = err.to_string();
    assert!(
        text.contains("TPM2_Unseal")
            && text.contains("TPM_RC_POLICY_FAIL")
            && text.contains("swtpm:"),
        "{text}"
    );
}

// --- LUKS2 with systemd --------------------------------------------------------------

fn cryptsetup(args: &[&str]) -> Output {
    Command::new("cryptsetup")
        .args(args)
        .output()
        .expect("running cryptsetup (scripts/setup installs cryptsetup-bin)")
}

fn cryptsetup_ok(args: &[&str]) -> String {
    let out = cryptsetup(args);
    assert!(
        out.status.success(),
        "cryptsetup {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A LUKS2 image file with a keyslot for the key file `key` (PBKDF2, cheap).
fn luks_image(t: &Swtpm) -> (PathBuf, PathBuf) {
    let image = t.path("data.img");
    File::create(&image).unwrap().set_len(20 << 20).unwrap();
    let key = t.path("key");
    fs::write(&key, random(32)).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    cryptsetup_ok(&[
        "luksFormat",
        "--type",
        "luks2",
        "-q",
        "--key-file",
        s(&key),
        "--pbkdf",
        "pbkdf2",
        "--pbkdf-force-iterations",
        "1000",
        s(&image),
    ]);
    (image, key)
}

/// The volume key cryptsetup dumps with the key file.
fn dumped_volume_key(image: &Path, key: &Path) -> Vec<u8> {
    let out = cryptsetup_ok(&[
        "luksDump",
        "--dump-volume-key",
        "--batch-mode",
        "--key-file",
        s(key),
        s(image),
    ]);
    let start = out.find("MK dump:").expect("no MK dump in luksDump output") + 8;
    let hex: String = out[start..]
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .flat_map(|l| l.split_whitespace())
        .collect();
    verity::hex::decode(&hex).unwrap()
}

#[test]
fn systemd_cryptenroll_token_unlocks_with_ours() {
    let t = Swtpm::start();
    measure_secure_boot(&mut t.tpm());
    let (image, key) = luks_image(&t);
    let out = Command::new("systemd-cryptenroll")
        .arg(format!("--unlock-key-file={}", key.display()))
        .arg(format!("--tpm2-device={}", t.tcti()))
        .arg("--tpm2-pcrs=7")
        .arg(&image)
        .output()
        .expect("running systemd-cryptenroll");
    assert!(
        out.status.success(),
        "systemd-cryptenroll failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut dev = File::open(&image).unwrap();
    let header = Luks2::read(&mut dev).unwrap();
    let (_, raw) = header
        .metadata
        .tokens
        .iter()
        .find(|(_, tok)| tok.kind == token::TYPE)
        .expect("systemd-cryptenroll wrote no systemd-tpm2 token");
    let tok = Tpm2Token::from_token(raw).unwrap();
    // Our writer gives back systemd's JSON byte for byte.
    assert_eq!(
        Value::Object(tok.to_object().unwrap()).to_text(),
        Value::Object(raw.object.clone()).to_text()
    );
    let mut tpm = t.tpm();
    let secret = tpm2::unseal(&mut tpm, &tok.sealed).unwrap();
    let passphrase = token::passphrase(&secret);
    let (slot, volume_key) = header.unlock(&mut dev, passphrase.as_bytes()).unwrap();
    assert_eq!(tok.keyslots, [slot]);
    assert_eq!(volume_key.as_bytes(), dumped_volume_key(&image, &key));

    // And systemd's blob is as locked as ours once PCR 7 changes.
    tpm2::extend_pcr(&mut tpm, SECURE_BOOT_PCR, b"SecureBoot=0").unwrap();
    assert!(is_policy_fail(
        &tpm2::unseal(&mut tpm, &tok.sealed).unwrap_err()
    ));
}

#[test]
fn our_token_is_accepted_by_systemds_plugin_and_opens_with_peer_tools() {
    let t = Swtpm::start();
    let (image, key) = luks_image(&t);
    let secret = random(32);
    let tok_json = {
        let mut tpm = t.tpm();
        measure_secure_boot(&mut tpm);
        let values: PcrValues = tpm2::boot_pcr_values(&mut tpm).unwrap();
        let sealed = tpm2::seal(&mut tpm, &secret, &values).unwrap();
        let mut dev = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&image)
            .unwrap();
        let mut header = Luks2::read(&mut dev).unwrap();
        let (_, volume_key) = header.unlock(&mut dev, &fs::read(&key).unwrap()).unwrap();
        let slot = header
            .add_keyslot(
                &volume_key,
                token::passphrase(&secret).as_bytes(),
                KdfParams::MACHINE_SECRET,
            )
            .unwrap();
        let tok = Tpm2Token {
            keyslots: vec![slot],
            sealed,
        };
        let object = tok.to_object().unwrap();
        header.add_token(object.clone()).unwrap();
        header.write(&mut dev).unwrap();
        Value::Object(object).to_text()
    };

    // libcryptsetup runs systemd's token plugin (validate, then dump) on our token.
    let dump = cryptsetup_ok(&["luksDump", s(&image)]);
    assert!(dump.contains("systemd-tpm2"), "{dump}");
    assert!(dump.contains("tpm2-hash-pcrs:   7+15"), "{dump}");
    assert!(dump.contains("tpm2-primary-alg: ecc"), "{dump}");
    // `token import` refuses a token the plugin's validator rejects: ours passes.
    let copy = t.path("copy.img");
    fs::copy(&image, &copy).unwrap();
    fs::write(t.path("token.json"), &tok_json).unwrap();
    cryptsetup_ok(&[
        "token",
        "import",
        "--token-id",
        "5",
        "--json-file",
        s(&t.path("token.json")),
        s(&copy),
    ]);
    let broken = tok_json.replace("\"tpm2-blob\":\"", "\"tpm2-blob\":\"!");
    fs::write(t.path("broken.json"), broken).unwrap();
    assert!(!cryptsetup(&[
        "token",
        "import",
        "--token-id",
        "6",
        "--json-file",
        s(&t.path("broken.json")),
        s(&copy),
    ])
    .status
    .success());

    // tpm2-tools unseals our token's blob; its base64 opens our keyslot in cryptsetup.
    let header = Luks2::read(&mut File::open(&image).unwrap()).unwrap();
    let tok = header
        .metadata
        .tokens
        .values()
        .find(|tok| tok.kind == token::TYPE)
        .unwrap();
    let tok = Tpm2Token::from_token(tok).unwrap();
    fs::write(t.path("tok.priv"), tpm2b(&tok.sealed.private)).unwrap();
    fs::write(t.path("tok.pub"), tpm2b(&tok.sealed.public)).unwrap();
    t.tools_primary();
    t.tool(&[
        "tpm2_load",
        "-C",
        "primary.ctx",
        "-u",
        "tok.pub",
        "-r",
        "tok.priv",
        "-c",
        "tok.ctx",
    ]);
    t.flush_tools();
    t.tool(&[
        "tpm2_unseal",
        "-c",
        "tok.ctx",
        "-p",
        "pcr:sha256:7,15",
        "-o",
        "tok.out",
    ]);
    t.flush_tools();
    let unsealed = fs::read(t.path("tok.out")).unwrap();
    assert_eq!(unsealed, secret);
    let pass = t.path("pass");
    fs::write(&pass, token::passphrase(&unsealed).as_bytes()).unwrap();
    cryptsetup_ok(&[
        "open",
        "--test-passphrase",
        "--key-slot",
        &tok.keyslots[0].to_string(),
        "--key-file",
        s(&pass),
        s(&image),
    ]);
}
