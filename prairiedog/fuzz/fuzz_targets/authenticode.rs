//! Authenticode (a PE image's signature: PKCS#7 DER, X.509, EFI signature lists) never
//! panics. Bytes starting `MZ` go through `authenticode::verify` whole (PE headers, the
//! digest, the certificate table, the PKCS#7, the RSA check with the signer's key) with
//! nothing trusted, so nothing may verify; other bytes go to each DER parser directly.
//! Properties: a parsed `SignedData`'s signed bytes are its attributes under the SET tag;
//! a parsed certificate is the whole input; signature list entries fit the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prairiedog::authenticode::{self, der, x509::Certificate, SignedData, Trust};

fuzz_target!(|data: &[u8]| {
    if data.starts_with(b"MZ") {
        let result = authenticode::verify(data, &Trust::default());
        assert!(result.is_err(), "verified with nothing trusted");
        return;
    }
    if let Ok(sd) = SignedData::parse(data) {
        let signed = sd.signed_bytes();
        assert_eq!(signed.len(), sd.signed_attributes.len());
        assert_eq!(signed.first(), Some(&der::tag::SET));
        assert_eq!(signed.get(1..), sd.signed_attributes.get(1..));
        for cert in &sd.certificates {
            if let Ok(c) = Certificate::parse(cert) {
                let _ = (c.subject_name(), c.issuer_name(), c.public_key());
            }
        }
    }
    if let Ok(c) = Certificate::parse(data) {
        assert_eq!(c.raw, data);
        let _ = c.signed_by(&c);
    }
    if let Some(entries) = prairiedog::efi::signature_lists(data) {
        let total: usize = entries.iter().map(|e| e.data.len() + 16).sum();
        assert!(total <= data.len());
    }
});
