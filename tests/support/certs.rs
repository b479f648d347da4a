//! Test PKI: a throw-away CA and a server certificate for `localhost`,
//! `127.0.0.1` and `::1`, written as PEM files into a caller-provided folder
//! (so Dovecot and popfetch's `ca_file` can read them), plus ready-made rustls
//! configurations for the scripted server and for self-test clients.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// The names every test server certificate is valid for.
pub const SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A generated test PKI. All paths live in `dir`.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// Where the PEM files live (the folder given to `generate` / `self_signed`).
    pub dir: PathBuf,
    /// The trust anchor: the test CA (or, for `self_signed`, the leaf itself).
    pub ca_cert_pem: String,
    pub ca_path: PathBuf,
    /// The server (leaf) certificate.
    pub cert_pem: String,
    pub cert_path: PathBuf,
    /// The leaf's private key, PKCS#8 PEM, file mode 0600.
    pub key_pem: String,
    pub key_path: PathBuf,
    /// Leaf followed by the CA certificate (just the leaf when self-signed).
    pub chain_path: PathBuf,
    /// `sha256:AB:CD:...` — SHA-256 of the leaf's DER, uppercase, colon separated.
    pub fingerprint: String,
}

impl TestPki {
    /// A CA and a leaf signed by it.
    pub fn generate(dir: &Path) -> TestPki {
        let ca_key = KeyPair::generate().expect("generate CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.distinguished_name = dn("popfetch test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut ca_params);
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate().expect("generate leaf key");
        let leaf_params = leaf_params();
        let leaf_cert = leaf_params
            .signed_by(&leaf_key, &issuer)
            .expect("sign leaf");

        Self::write(
            dir,
            ca_cert.pem(),
            leaf_cert.pem(),
            leaf_cert.der().as_ref(),
            leaf_key.serialize_pem(),
            false,
        )
    }

    /// A self-signed leaf (no CA): `ca_*` are the leaf itself. Use it for
    /// "certificate not trusted" tests (don't hand `ca_path` to the client) or
    /// for pinning tests (`fingerprint`).
    pub fn self_signed(dir: &Path) -> TestPki {
        let leaf_key = KeyPair::generate().expect("generate leaf key");
        let leaf_cert = leaf_params()
            .self_signed(&leaf_key)
            .expect("self-sign leaf");
        Self::write(
            dir,
            leaf_cert.pem(),
            leaf_cert.pem(),
            leaf_cert.der().as_ref(),
            leaf_key.serialize_pem(),
            true,
        )
    }

    /// A self-signed server certificate marked as a CA (basicConstraints
    /// CA:TRUE), as plain `openssl req -x509` makes them; `ca_*` are the
    /// certificate itself.
    pub fn self_signed_ca(dir: &Path) -> TestPki {
        let key = KeyPair::generate().expect("generate key");
        let mut params = leaf_params();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.extended_key_usages = Vec::new();
        params.key_usages = Vec::new();
        let cert = params.self_signed(&key).expect("self-sign");
        Self::write(
            dir,
            cert.pem(),
            cert.pem(),
            cert.der().as_ref(),
            key.serialize_pem(),
            true,
        )
    }

    fn write(
        dir: &Path,
        ca_cert_pem: String,
        cert_pem: String,
        leaf_der: &[u8],
        key_pem: String,
        self_signed: bool,
    ) -> TestPki {
        fs::create_dir_all(dir).expect("create PKI dir");
        let ca_path = dir.join("ca.pem");
        let cert_path = dir.join("cert.pem");
        let key_path = dir.join("key.pem");
        let chain_path = dir.join("chain.pem");
        write_file(&ca_path, ca_cert_pem.as_bytes(), 0o644);
        write_file(&cert_path, cert_pem.as_bytes(), 0o644);
        write_file(&key_path, key_pem.as_bytes(), 0o600);
        let chain = if self_signed {
            cert_pem.clone()
        } else {
            let mut c = cert_pem.clone();
            if !c.ends_with('\n') {
                c.push('\n');
            }
            c.push_str(&ca_cert_pem);
            c
        };
        write_file(&chain_path, chain.as_bytes(), 0o644);
        TestPki {
            dir: dir.to_path_buf(),
            ca_cert_pem,
            ca_path,
            cert_pem,
            cert_path,
            key_pem,
            key_path,
            chain_path,
            fingerprint: fingerprint_of(leaf_der),
        }
    }

    /// The certificate chain the server presents (leaf first), as DER.
    pub fn chain_der(&self) -> Vec<CertificateDer<'static>> {
        let mut chain = vec![pem_cert(&self.cert_pem)];
        if self.ca_cert_pem != self.cert_pem {
            chain.push(pem_cert(&self.ca_cert_pem));
        }
        chain
    }

    /// The CA (trust anchor) certificate as DER.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        pem_cert(&self.ca_cert_pem)
    }

    /// A rustls server configuration presenting the leaf (+ CA) with the leaf key.
    pub fn rustls_server_config(&self) -> Arc<rustls::ServerConfig> {
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("parse key PEM");
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(self.chain_der(), key)
        .expect("server cert/key");
        Arc::new(cfg)
    }

    /// A rustls client configuration that trusts only this PKI's CA
    /// (for self-tests and hand-written test clients).
    pub fn rustls_client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der()).expect("add CA to root store");
        client_config_trusting(roots)
    }
}

/// A rustls client configuration that trusts only the certificates in the
/// PEM file `ca_file` (what popfetch gets as `ca_file`), for clients that
/// have the file but not the [`TestPki`] (the bench's bare client).
pub fn client_config_for_ca_file(ca_file: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).expect("read the CA file") {
        roots
            .add(cert.expect("parse CA PEM"))
            .expect("add CA to root store");
    }
    client_config_trusting(roots)
}

fn client_config_trusting(roots: rustls::RootCertStore) -> Arc<rustls::ClientConfig> {
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(cfg)
}

/// `sha256:AB:CD:...` of some DER bytes.
pub fn fingerprint_of(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
    format!("sha256:{}", hex.join(":"))
}

fn pem_cert(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("parse certificate PEM")
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "popfetch tests");
    dn
}

fn validity(params: &mut CertificateParams) {
    params.not_before = date_time_ymd(2000, 1, 1);
    params.not_after = date_time_ymd(2099, 12, 31);
}

fn leaf_params() -> CertificateParams {
    let names: Vec<String> = SERVER_NAMES.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(names).expect("leaf params");
    params.distinguished_name = dn("localhost");
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut params);
    params
}

fn write_file(path: &Path, data: &[u8], mode: u32) {
    let _ = fs::remove_file(path);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(data)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
