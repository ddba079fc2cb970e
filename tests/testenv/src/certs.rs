//! Certificates and keys for one control-plane run, generated with the `openssl` CLI.
//!
//! Shelling out to `openssl` keeps the dependency tree free of an X.509 builder
//! crate; EC P-256 keys make the whole set take a few tens of milliseconds.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

const VALIDITY_DAYS: &str = "3650";

/// Paths of every PEM file the components need.
#[derive(Debug, Clone)]
pub(crate) struct Certs {
    /// Cluster CA (trusted by clients, `--client-ca-file`).
    pub ca_cert: PathBuf,
    /// The cluster CA certificate in DER form (for `kube::Config::root_cert`).
    pub ca_der: Vec<u8>,
    /// Serving certificate for kube-apiserver and kube-controller-manager
    /// (SANs `IP:127.0.0.1`, `DNS:localhost`).
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    /// Service-account token signing key pair.
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
    /// Front-proxy (aggregation layer) CA and client certificate.
    pub front_proxy_ca_cert: PathBuf,
    pub front_proxy_client_cert: PathBuf,
    pub front_proxy_client_key: PathBuf,
}

/// Generates all certificates into `dir`.
pub(crate) fn generate(dir: &Path) -> Result<Certs> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;

    let (ca_cert, ca_key) = self_signed_ca(dir, "ca", "testmesh-testenv-ca")?;
    let (serving_cert, serving_key) = leaf(
        dir,
        "apiserver",
        "kube-apiserver",
        &ca_cert,
        &ca_key,
        "extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1,DNS:localhost\n",
    )?;
    let (front_proxy_ca_cert, front_proxy_ca_key) =
        self_signed_ca(dir, "front-proxy-ca", "testmesh-testenv-front-proxy-ca")?;
    let (front_proxy_client_cert, front_proxy_client_key) = leaf(
        dir,
        "front-proxy-client",
        "front-proxy-client",
        &front_proxy_ca_cert,
        &front_proxy_ca_key,
        "extendedKeyUsage = clientAuth\n",
    )?;

    let sa_key = dir.join("sa.key");
    let sa_pub = dir.join("sa.pub");
    openssl(
        "service-account key",
        Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
            ])
            .arg(&sa_key),
    )?;
    openssl(
        "service-account public key",
        Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&sa_key)
            .arg("-out")
            .arg(&sa_pub),
    )?;

    let ca_der_path = dir.join("ca.der");
    openssl(
        "CA to DER",
        Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&ca_cert)
            .arg("-out")
            .arg(&ca_der_path),
    )?;
    let ca_der = std::fs::read(&ca_der_path)
        .map_err(|e| Error::io(format!("read {}", ca_der_path.display()), e))?;

    Ok(Certs {
        ca_cert,
        ca_der,
        serving_cert,
        serving_key,
        sa_key,
        sa_pub,
        front_proxy_ca_cert,
        front_proxy_client_cert,
        front_proxy_client_key,
    })
}

/// Writes an openssl config with a fixed subject and an `[ext]` section.
fn write_config(dir: &Path, name: &str, common_name: &str, extensions: &str) -> Result<PathBuf> {
    let path = dir.join(format!("{name}.cnf"));
    let text = format!(
        "[req]\nprompt = no\ndistinguished_name = dn\n\n[dn]\nCN = {common_name}\n\n[ext]\n{extensions}"
    );
    std::fs::write(&path, text).map_err(|e| Error::io(format!("write {}", path.display()), e))?;
    Ok(path)
}

fn self_signed_ca(dir: &Path, name: &str, common_name: &str) -> Result<(PathBuf, PathBuf)> {
    let config = write_config(
        dir,
        name,
        common_name,
        "basicConstraints = critical,CA:TRUE\n\
         keyUsage = critical,digitalSignature,keyCertSign,cRLSign\n\
         subjectKeyIdentifier = hash\n",
    )?;
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    openssl(
        name,
        Command::new("openssl")
            .args(["req", "-x509", "-new", "-nodes", "-days", VALIDITY_DAYS])
            .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
            .args(["-extensions", "ext", "-config"])
            .arg(&config)
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    )?;
    Ok((cert, key))
}

fn leaf(
    dir: &Path,
    name: &str,
    common_name: &str,
    ca_cert: &Path,
    ca_key: &Path,
    extra_extensions: &str,
) -> Result<(PathBuf, PathBuf)> {
    let config = write_config(
        dir,
        name,
        common_name,
        &format!(
            "basicConstraints = critical,CA:FALSE\n\
             keyUsage = critical,digitalSignature,keyEncipherment\n\
             authorityKeyIdentifier = keyid\n\
             {extra_extensions}"
        ),
    )?;
    let csr = dir.join(format!("{name}.csr"));
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    openssl(
        &format!("{name} CSR"),
        Command::new("openssl")
            .args(["req", "-new", "-nodes"])
            .args([
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-config",
            ])
            .arg(&config)
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr),
    )?;
    openssl(
        &format!("{name} signing"),
        Command::new("openssl")
            .args(["x509", "-req", "-days", VALIDITY_DAYS, "-extensions", "ext"])
            .arg("-set_serial")
            .arg(format!("0x{}", crate::control_plane::random_hex(16)?))
            .arg("-extfile")
            .arg(&config)
            .arg("-in")
            .arg(&csr)
            .arg("-CA")
            .arg(ca_cert)
            .arg("-CAkey")
            .arg(ca_key)
            .arg("-out")
            .arg(&cert),
    )?;
    Ok((cert, key))
}

fn openssl(step: &str, command: &mut Command) -> Result<()> {
    let output = command
        .output()
        .map_err(|e| Error::io(format!("run openssl ({step})"), e))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::Openssl {
            step: step.to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}
