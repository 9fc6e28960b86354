//! TLS setup: rustls with the `ring` provider, the system's roots plus extra CA files, or (for
//! insecure registries only) no verification at all.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::{Error, Result};

/// Builds the rustls configuration. The provider is chosen explicitly so that the result does
/// not depend on which providers other crates in the build enabled.
pub(crate) fn client_config(
    ca_files: &[PathBuf],
    skip_verify: bool,
) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Invalid(format!("TLS setup: {e}")))?;
    let mut config = if skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            // Some system bundles hold certificates rustls cannot use; skip them as browsers do.
            let _ = roots.add(cert);
        }
        for file in ca_files {
            let certs = CertificateDer::pem_file_iter(file).map_err(|e| {
                Error::Invalid(format!("cannot read CA file {}: {e}", file.display()))
            })?;
            let mut n = 0;
            for cert in certs {
                let cert = cert
                    .map_err(|e| Error::Invalid(format!("bad PEM in {}: {e}", file.display())))?;
                roots.add(cert).map_err(|e| {
                    Error::Invalid(format!("bad CA certificate in {}: {e}", file.display()))
                })?;
                n += 1;
            }
            if n == 0 {
                return Err(Error::Invalid(format!(
                    "no certificate found in CA file {}",
                    file.display()
                )));
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts every certificate, still checking handshake signatures. Used only for registries the
/// user marked insecure.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
