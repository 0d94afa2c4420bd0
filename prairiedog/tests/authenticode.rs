//! `prairiedog::authenticode` against the peer tools on the same files: `sbverify --cert`
//! (sbsigntools) decides whether each image verifies, `hash-to-efi-sig-list` (efitools)
//! computes the Authenticode digest, `cert-to-efi-sig-list` makes db. Keys are made at test
//! time (`liftoff_image::secureboot::KeySet`, openssl), images signed by `sbsign` through
//! the image builder's `sign`.

// An integration-test crate: clippy.toml lets #[test] functions unwrap, index and panic,
// but not the helpers and fixtures beside them, which are test code all the same.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{run, uki_file};
use liftoff_image::secureboot::{self, keys::KeyPair, KeySet};
use prairiedog::authenticode::{self, Trust, VerifyError};
use prairiedog::efi;
use prairiedog::pe::PeInfo;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Keys for one test: our db set, another set, and a CA with a leaf it issued.
struct Keys {
    ours: KeySet,
    other: KeySet,
    ca: PathBuf,
    leaf: KeySet,
}

fn openssl(args: &[&str], dir: &Path) {
    run(Command::new("openssl").args(args).current_dir(dir));
}

fn keys(dir: &Path) -> Keys {
    let ours = KeySet::create(&dir.join("ours"), "Ours", None).unwrap();
    let other = KeySet::create(&dir.join("other"), "Other", None).unwrap();
    // A CA (basicConstraints CA) and a leaf it issued, as an operator's PKI would.
    let ca_dir = dir.join("ca");
    std::fs::create_dir_all(&ca_dir).unwrap();
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-sha256",
            "-days",
            "30",
            "-subj",
            "/CN=Liftoff test CA/",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
        &ca_dir,
    );
    openssl(
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=Liftoff test leaf/",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
        ],
        &ca_dir,
    );
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "4660",
            "-sha256",
            "-days",
            "30",
            "-out",
            "leaf.crt",
        ],
        &ca_dir,
    );
    let mut leaf = ours.clone();
    leaf.db = KeyPair {
        cert: ca_dir.join("leaf.crt"),
        key: ca_dir.join("leaf.key"),
    };
    Keys {
        ours,
        other,
        ca: ca_dir.join("ca.crt"),
        leaf,
    }
}

fn signed(keys: &KeySet, unsigned: &Path, out: &Path) -> PathBuf {
    secureboot::sign(keys, unsigned, out).unwrap();
    out.to_owned()
}

/// The peer tool's verdict.
fn sbverify(image: &Path, cert: &Path) -> bool {
    secureboot::verifies(image, cert).unwrap()
}

fn ours(image: &Path, cert: &Path) -> Result<authenticode::Verified, VerifyError> {
    let trust = Trust::from_files(std::slice::from_ref(&cert.to_path_buf())).unwrap();
    authenticode::verify(&std::fs::read(image).unwrap(), &trust)
}

/// Flips one byte inside section `name` of the PE file at `path`.
fn flip_in_section(path: &Path, name: &str) {
    let mut bytes = std::fs::read(path).unwrap();
    let pe = PeInfo::parse(&bytes).unwrap();
    let s = pe.section(name).unwrap();
    bytes[s.raw_offset as usize + 3] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

/// The Authenticode digest `hash-to-efi-sig-list` computes, and its dbx list.
fn peer_digest(image: &Path, esl: &Path) -> [u8; 32] {
    run(Command::new("hash-to-efi-sig-list").arg(image).arg(esl));
    let entries = efi::signature_lists(&std::fs::read(esl).unwrap()).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].kind, efi::CERT_SHA256);
    entries[0].data.clone().try_into().unwrap()
}

/// Every case of the matrix: both tools agree, and ours says why it refuses.
#[test]
fn agrees_with_sbverify_on_the_tamper_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let k = keys(d);
    let unsigned = uki_file(
        d,
        "uki",
        "liftoff.slot=B liftoff.roothash=00 console=ttyS0",
        "IMAGE_VERSION=1.0\n",
    );
    let good = signed(&k.ours, &unsigned, &d.join("good.efi"));
    let cert = &k.ours.db.cert;

    // Signed by the db key: both accept.
    assert!(sbverify(&good, cert));
    let v = ours(&good, cert).unwrap();
    assert_eq!(v.signer, "CN=Ours Secure Boot db");
    assert_eq!(v.anchor, "CN=Ours Secure Boot db");

    // Signed by another key: both refuse; ours names the signer.
    let foreign = signed(&k.other, &unsigned, &d.join("foreign.efi"));
    assert!(!sbverify(&foreign, cert));
    assert!(
        sbverify(&foreign, &k.other.db.cert),
        "the peer takes its own key"
    );
    let err = ours(&foreign, cert).unwrap_err();
    assert!(
        matches!(&err, VerifyError::Untrusted { signer, .. } if signer == "CN=Other Secure Boot db"),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("signed by CN=Other Secure Boot db, which no trusted certificate issued"),
        "{err}"
    );

    // A byte changed in a section after signing: both refuse.
    for section in [".cmdline", ".text", ".osrel"] {
        let tampered = d.join(format!("tampered{section}.efi"));
        std::fs::copy(&good, &tampered).unwrap();
        flip_in_section(&tampered, section);
        assert!(!sbverify(&tampered, cert), "{section}");
        assert_eq!(
            ours(&tampered, cert).unwrap_err(),
            VerifyError::DigestMismatch,
            "{section}"
        );
    }
    // A byte changed in the signature's RSA value (its last bytes): both refuse.
    let mut bytes = std::fs::read(&good).unwrap();
    let (offset, size) = PeInfo::parse(&bytes).unwrap().cert_table.unwrap();
    let der_end =
        offset + u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
    assert!(der_end <= offset + size);
    bytes[der_end - 5] ^= 0x80;
    let bad_sig = d.join("bad-signature.efi");
    std::fs::write(&bad_sig, &bytes).unwrap();
    assert!(!sbverify(&bad_sig, cert));
    assert!(
        matches!(ours(&bad_sig, cert), Err(VerifyError::BadSignature { .. })),
        "{:?}",
        ours(&bad_sig, cert)
    );

    // Signature removed: both refuse.
    let removed = d.join("removed.efi");
    std::fs::copy(&good, &removed).unwrap();
    run(Command::new("sbattach").arg("--remove").arg(&removed));
    assert!(!sbverify(&removed, cert));
    assert_eq!(ours(&removed, cert).unwrap_err(), VerifyError::NoSignature);
    assert_eq!(ours(&unsigned, cert).unwrap_err(), VerifyError::NoSignature);

    // Signed by a leaf that the trusted CA issued: both accept; trusting only the leaf's
    // sibling (our db) both refuse.
    let by_leaf = signed(&k.leaf, &unsigned, &d.join("leaf.efi"));
    assert!(sbverify(&by_leaf, &k.ca));
    let v = ours(&by_leaf, &k.ca).unwrap();
    assert_eq!(
        (v.signer.as_str(), v.anchor.as_str()),
        ("CN=Liftoff test leaf", "CN=Liftoff test CA")
    );
    assert!(!sbverify(&by_leaf, cert));
    assert!(matches!(
        ours(&by_leaf, cert),
        Err(VerifyError::Untrusted { .. })
    ));
    // A certificate with the CA's name but another key issued nothing.
    let fake_ca = d.join("ca").join("fake-ca.crt");
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-sha256",
            "-days",
            "30",
            "-subj",
            "/CN=Liftoff test CA/",
            "-keyout",
            "fake-ca.key",
            "-out",
            "fake-ca.crt",
        ],
        &d.join("ca"),
    );
    assert!(!sbverify(&by_leaf, &fake_ca));
    assert!(matches!(
        ours(&by_leaf, &fake_ca),
        Err(VerifyError::Untrusted { .. })
    ));
}

/// Our Authenticode digest is efitools' on signed x86_64 images (sbsign pads the file to
/// 8 bytes; the padding is hashed), and both tools accept them.
#[test]
fn digest_matches_hash_to_efi_sig_list() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let k = KeySet::create(&d.join("keys"), "Digest", None).unwrap();
    let x86 = uki_file(d, "x86", "a b=c", "IMAGE_VERSION=1\n");
    for (i, unsigned) in [
        x86,
        PathBuf::from("/usr/lib/systemd/boot/efi/linuxx64.efi.stub"),
        PathBuf::from("/usr/lib/systemd/boot/efi/systemd-bootx64.efi"),
    ]
    .into_iter()
    .enumerate()
    {
        let image = signed(&k, &unsigned, &d.join(format!("{i}.efi")));
        let bytes = std::fs::read(&image).unwrap();
        let pe = PeInfo::parse(&bytes).unwrap();
        let want = peer_digest(&image, &d.join(format!("{i}.esl")));
        assert_eq!(
            authenticode::image_digest(&bytes, &pe).unwrap(),
            want,
            "{}",
            unsigned.display()
        );
        let v = ours(&image, &k.db.cert).unwrap();
        assert_eq!(v.digest, want);
        assert!(sbverify(&image, &k.db.cert));
    }
}

/// db and dbx as efivarfs holds them, made by efitools: db-signed images verify, others
/// do not; an image whose digest dbx lists is refused, and so is a signer dbx lists.
#[test]
fn trusts_db_and_honours_dbx_from_efivarfs() {
    // (efitools' hash-to-efi-sig-list reads x86 images only; arm64 is in the next test.)
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let k = keys(d);
    let efivars = d.join("efivars");
    std::fs::create_dir_all(&efivars).unwrap();
    // An efivarfs file: 4 attribute bytes (NV, BS, RT, time-based authenticated), then
    // the value.
    let put = |name: &str, vendor: &str, value: &[u8]| {
        let mut bytes = 0x27u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(value);
        std::fs::write(efivars.join(format!("{name}-{vendor}")), bytes).unwrap();
    };
    // cert-to-efi-sig-list takes the PEM certificate.
    let esl = |cert: &Path, name: &str| -> Vec<u8> {
        let out = d.join(name);
        run(Command::new("cert-to-efi-sig-list")
            .arg("-g")
            .arg("11111111-2222-3333-4444-555555555555")
            .arg(cert)
            .arg(&out));
        std::fs::read(out).unwrap()
    };
    let unsigned = uki_file(d, "uki", "liftoff.slot=B", "IMAGE_VERSION=1\n");
    let good = signed(&k.ours, &unsigned, &d.join("good.efi"));
    let foreign = signed(&k.other, &unsigned, &d.join("foreign.efi"));
    let by_leaf = signed(&k.leaf, &unsigned, &d.join("leaf.efi"));
    let verify = |image: &Path| {
        let trust = Trust::for_install(&efivars, &[]).unwrap().unwrap();
        authenticode::verify(&std::fs::read(image).unwrap(), &trust)
    };

    // Secure Boot off, no --trust: nothing to check against.
    assert_eq!(Trust::for_install(&efivars, &[]).unwrap(), None);
    put("SecureBoot", efi::GLOBAL, &[1]);
    // db with our certificate and the CA, in two lists, as efi-updatevar -a appends them.
    let db = [esl(cert_of(&k.ours), "ours.esl"), esl(&k.ca, "ca.esl")].concat();
    put("db", efi::IMAGE_SECURITY_DATABASE, &db);
    assert_eq!(verify(&good).unwrap().anchor, "CN=Ours Secure Boot db");
    assert_eq!(verify(&by_leaf).unwrap().anchor, "CN=Liftoff test CA");
    let err = verify(&foreign).unwrap_err();
    assert!(err.to_string().contains("CN=Other Secure Boot db"), "{err}");
    assert!(
        err.to_string()
            .contains("CN=Ours Secure Boot db, CN=Liftoff test CA from db in"),
        "{err}"
    );

    // dbx lists the good image's digest (computed by efitools): refused; the leaf's image
    // (another signature, same digest) too, since the digest does not cover signatures.
    let dbx = std::fs::read({
        let p = d.join("dbx.esl");
        peer_digest(&good, &p);
        p
    })
    .unwrap();
    put("dbx", efi::IMAGE_SECURITY_DATABASE, &dbx);
    assert!(matches!(
        verify(&good),
        Err(VerifyError::RevokedImage { .. })
    ));
    assert!(matches!(
        verify(&by_leaf),
        Err(VerifyError::RevokedImage { .. })
    ));
    // Another image (a different command line) is still fine.
    let other_uki = uki_file(d, "uki2", "liftoff.slot=A", "IMAGE_VERSION=1\n");
    let good2 = signed(&k.ours, &other_uki, &d.join("good2.efi"));
    assert!(verify(&good2).is_ok());

    // dbx lists the CA: what the leaf signed is refused, our db key's images are not.
    let by_leaf2 = signed(&k.leaf, &other_uki, &d.join("leaf2.efi"));
    assert!(verify(&by_leaf2).is_ok());
    put(
        "dbx",
        efi::IMAGE_SECURITY_DATABASE,
        &esl(&k.ca, "ca-dbx.esl"),
    );
    let err = verify(&by_leaf2).unwrap_err();
    assert_eq!(
        err,
        VerifyError::RevokedCertificate {
            cert: "CN=Liftoff test CA".into()
        }
    );
    assert!(verify(&good2).is_ok());

    // Secure Boot on with a db of no certificates: an error, not "nothing to check".
    put("db", efi::IMAGE_SECURITY_DATABASE, &dbx);
    assert!(Trust::for_install(&efivars, &[]).is_err());
    // --trust replaces db (dbx still applies).
    let trust = Trust::for_install(&efivars, std::slice::from_ref(&k.other.db.cert))
        .unwrap()
        .unwrap();
    assert!(authenticode::verify(&std::fs::read(&foreign).unwrap(), &trust).is_ok());
}

/// An arm64 image (systemd-stub for aarch64, PE32+ machine 0xaa64): both tools accept it
/// signed by db, both refuse it with a byte of `.text` changed or with another key.
#[test]
fn arm64_images_agree_with_sbverify() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let k = keys(d);
    let stub = Path::new("/usr/lib/systemd/boot/efi/linuxaa64.efi.stub");
    let good = signed(&k.ours, stub, &d.join("aa64.efi"));
    let cert = &k.ours.db.cert;
    assert!(sbverify(&good, cert));
    assert!(ours(&good, cert).is_ok());
    let foreign = signed(&k.other, stub, &d.join("aa64-other.efi"));
    assert!(!sbverify(&foreign, cert));
    assert!(matches!(
        ours(&foreign, cert),
        Err(VerifyError::Untrusted { .. })
    ));
    let tampered = d.join("aa64-tampered.efi");
    std::fs::copy(&good, &tampered).unwrap();
    flip_in_section(&tampered, ".text");
    assert!(!sbverify(&tampered, cert));
    assert_eq!(
        ours(&tampered, cert).unwrap_err(),
        VerifyError::DigestMismatch
    );
}

fn cert_of(k: &KeySet) -> &Path {
    &k.db.cert
}

/// The manifest's detached signature (`authenticode::detached`) against `openssl dgst
/// -sha256 -verify` on the same files: signatures made by `openssl dgst -sha256 -sign`
/// (the image builder's `sign_detached`) with our db key verify with ours and with openssl;
/// another key, a CA-issued leaf (no chain to follow), every byte of the signature flipped,
/// every byte of the manifest flipped, truncations and a dbx-revoked certificate are
/// refused by ours, and openssl gives the same verdict on each; bytes after the signature
/// are the one case where openssl accepts and ours refuses.
#[test]
fn detached_signatures_agree_with_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let k = keys(d);
    let manifest = d.join("manifest");
    let text = format!(
        "boot 33554432 {h}\nroot 1048576 {h}\nhash 12288 {h}\nverity-root-hash {h}\nversion 2.1\n",
        h = "ab".repeat(32)
    );
    std::fs::write(&manifest, &text).unwrap();
    let sig_by = |keys: &KeySet, name: &str| -> PathBuf {
        let sig = d.join(name);
        secureboot::sign_detached(keys, &manifest, &sig).unwrap();
        sig
    };
    let trust_of = |certs: &[&Path]| {
        let paths: Vec<PathBuf> = certs.iter().map(|c| c.to_path_buf()).collect();
        Trust::from_files(&paths).unwrap()
    };
    let ours = |msg: &[u8], sig: &[u8], certs: &[&Path]| {
        authenticode::verify_detached(msg, sig, &trust_of(certs))
    };
    let peer = |msg: &[u8], sig: &[u8], cert: &Path| -> bool {
        let (m, s) = (d.join("peer-msg"), d.join("peer-sig"));
        std::fs::write(&m, msg).unwrap();
        std::fs::write(&s, sig).unwrap();
        secureboot::verifies_detached(&m, &s, cert).unwrap()
    };
    let good = std::fs::read(sig_by(&k.ours, "ours.sig")).unwrap();
    let foreign = std::fs::read(sig_by(&k.other, "other.sig")).unwrap();
    let leaf = std::fs::read(sig_by(&k.leaf, "leaf.sig")).unwrap();
    let msg = text.as_bytes();
    assert_eq!(
        good.len(),
        256,
        "RSA 2048: the signature is the modulus size"
    );
    // PKCS#1 v1.5 is deterministic: signing again gives the same bytes.
    assert_eq!(std::fs::read(sig_by(&k.ours, "again.sig")).unwrap(), good);

    let ours_cn = "CN=Ours Secure Boot db";
    assert_eq!(ours(msg, &good, &[&k.ours.db.cert]).as_deref(), Ok(ours_cn));
    assert!(peer(msg, &good, &k.ours.db.cert));
    // Any trusted certificate's key will do.
    assert_eq!(
        ours(msg, &good, &[&k.other.db.cert, &k.ours.db.cert]).as_deref(),
        Ok(ours_cn)
    );
    let err = ours(msg, &foreign, &[&k.ours.db.cert]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("does not verify with any trusted certificate's key"),
        "{err}"
    );
    assert!(!peer(msg, &foreign, &k.ours.db.cert));
    // A leaf the trusted CA issued: the detached signature carries no certificate, so
    // there is no chain to follow; openssl with the CA's key refuses it too.
    assert!(ours(msg, &leaf, &[&k.ca]).is_err());
    assert!(!peer(msg, &leaf, &k.ca));
    assert!(ours(msg, &leaf, &[&k.leaf.db.cert]).is_ok());
    assert!(peer(msg, &leaf, &k.leaf.db.cert));

    // Every byte of the signature and of the manifest flipped: refused. The peer is asked
    // about every 16th (each openssl run costs a process).
    for at in 0..good.len() {
        let mut sig = good.clone();
        sig[at] ^= 0x01;
        assert!(
            ours(msg, &sig, &[&k.ours.db.cert]).is_err(),
            "sig byte {at}"
        );
        if at % 16 == 0 {
            assert!(!peer(msg, &sig, &k.ours.db.cert), "sig byte {at}");
        }
    }
    for at in 0..msg.len() {
        let mut m = msg.to_vec();
        m[at] ^= 0x20;
        assert!(
            ours(&m, &good, &[&k.ours.db.cert]).is_err(),
            "manifest byte {at}"
        );
        if at % 16 == 0 {
            assert!(!peer(&m, &good, &k.ours.db.cert), "manifest byte {at}");
        }
    }
    for len in [0, 1, 255] {
        assert!(
            ours(msg, &good[..len], &[&k.ours.db.cert]).is_err(),
            "{len}"
        );
    }
    // Bytes after the signature: ours refuses them; `openssl dgst -verify` reads only as
    // many bytes of the file as the key's size and accepts (the one difference, ours the
    // stricter: a signature file is exactly the signature).
    let mut longer = good.clone();
    longer.extend_from_slice(b"trailing\n");
    assert!(ours(msg, &longer, &[&k.ours.db.cert]).is_err());
    assert!(peer(msg, &longer, &k.ours.db.cert));

    // dbx listing the trusted certificate: refused with its own reason.
    let efivars = d.join("efivars");
    std::fs::create_dir_all(&efivars).unwrap();
    let esl = d.join("dbx.esl");
    run(Command::new("cert-to-efi-sig-list")
        .arg(&k.ours.db.cert)
        .arg(&esl));
    let mut bytes = 0x27u32.to_le_bytes().to_vec();
    bytes.extend_from_slice(&std::fs::read(&esl).unwrap());
    std::fs::write(
        efivars.join(format!("dbx-{}", efi::IMAGE_SECURITY_DATABASE)),
        bytes,
    )
    .unwrap();
    let mut trust = trust_of(&[&k.ours.db.cert]);
    trust.add_dbx(&efivars).unwrap();
    assert_eq!(
        authenticode::verify_detached(msg, &good, &trust).unwrap_err(),
        authenticode::DetachedError::Revoked {
            cert: ours_cn.to_owned()
        }
    );
}
