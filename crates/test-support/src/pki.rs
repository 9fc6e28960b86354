//! A test certificate authority and server certificates made with rcgen, and a raw TLS client
//! (rustls) trusting it.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A test CA and a server certificate for `127.0.0.1` and `localhost`, written as PEM files:
/// `ca.pem`, `server.crt`, `server.key`, and `certs/ca.crt` (a directory for skopeo's
/// `--cert-dir`).
pub struct Pki {
    ca_params: rcgen::CertificateParams,
    ca_key: rcgen::KeyPair,
    /// DER of the CA certificate.
    pub ca_der: Vec<u8>,
    /// `ca.pem`: the CA certificate (for `curl --cacert`).
    pub ca_file: PathBuf,
    /// `certs/`, holding `ca.crt` (for skopeo's `--cert-dir`).
    pub cert_dir: PathBuf,
    /// `server.crt`: the server certificate.
    pub cert_file: PathBuf,
    /// `server.key`: its private key.
    pub key_file: PathBuf,
    /// DER of the server certificate in `cert_file`.
    pub leaf_der: Vec<u8>,
}

impl Pki {
    /// A new CA and server certificate (serial 1), written under `dir`.
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "berth test CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let cert_dir = dir.join("certs");
        std::fs::create_dir_all(&cert_dir).unwrap();
        std::fs::write(cert_dir.join("ca.crt"), ca.pem()).unwrap();
        let mut pki = Pki {
            ca_params,
            ca_key,
            ca_der: ca.der().to_vec(),
            ca_file,
            cert_dir,
            cert_file: dir.join("server.crt"),
            key_file: dir.join("server.key"),
            leaf_der: Vec::new(),
        };
        pki.leaf_der = pki.write_server_cert(1);
        pki
    }

    /// Issues a server certificate with `serial` for 127.0.0.1 and localhost (a new key), and
    /// returns (certificate PEM, key PEM, certificate DER).
    pub fn issue_server_cert(&self, serial: u64) -> (String, String, Vec<u8>) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "berth test server");
        p.serial_number = Some(rcgen::SerialNumber::from(serial));
        p.is_ca = rcgen::IsCa::ExplicitNoCa;
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let issuer = rcgen::Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = p.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    /// Writes a new server certificate and key over `cert_file`/`key_file` (each through a
    /// temporary file and a rename) and returns the certificate's DER.
    pub fn write_server_cert(&self, serial: u64) -> Vec<u8> {
        let (cert, key, der) = self.issue_server_cert(serial);
        for (path, data) in [(&self.key_file, key), (&self.cert_file, cert)] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, data).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
        der
    }

    /// A rustls client configuration trusting this CA, offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(self.ca_der.clone()))
            .unwrap();
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }

    /// Connects to `port` over TLS (server name `localhost`), completing the handshake.
    pub fn connect(
        &self,
        port: u16,
        alpn: &[&[u8]],
    ) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
        let sock = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        sock.set_write_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let conn = rustls::ClientConnection::new(
            self.client_config(alpn),
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
        )
        .unwrap();
        let mut s = rustls::StreamOwned::new(conn, sock);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).expect("TLS handshake");
        }
        s
    }

    /// The DER of the certificate the server on `port` presents now (verified against the CA).
    pub fn served_certificate(&self, port: u16) -> Vec<u8> {
        let s = self.connect(port, &[b"http/1.1"]);
        s.conn.peer_certificates().expect("server certificates")[0].to_vec()
    }
}

/// Sends raw bytes as one HTTP/1.1 request over TLS and returns what the server answers before
/// it closes or `Connection: close` completes (write errors are ignored: the server may stop
/// reading early).
pub fn raw_tls_request(pki: &Pki, port: u16, request: &[u8]) -> Vec<u8> {
    let mut s = pki.connect(port, &[b"http/1.1"]);
    let _ = s.write_all(request).and_then(|()| s.flush());
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    out
}
