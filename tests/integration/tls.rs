//! TLS: a node serving gRPC over TLS with client certificates required,
//! clients and peers that present them, and plaintext refused off loopback.
//! Certificates are generated at test time with rcgen.

use std::path::Path;
use std::process::Command;

use qtrace_client::connect::{Tls, connect_with};
use qtrace_ledger::pb;
use qtrace_tests::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

struct Pki {
    ca_pem: String,
    server: (String, String),
    client: (String, String),
    /// A client certificate for the same name, issued by another CA that
    /// the node does not trust.
    untrusted_client: (String, String),
}

/// A self-signed CA named `name`.
fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn pki() -> Pki {
    let ca = new_ca("qtrace test CA");
    let rogue = new_ca("qtrace untrusted CA");
    let leaf = |names: Vec<String>, issuer: &CertifiedIssuer<'static, KeyPair>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names).unwrap().signed_by(&key, issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Pki {
        ca_pem: ca.pem(),
        server: leaf(vec!["localhost".into(), "127.0.0.1".into()], &ca),
        client: leaf(vec!["qtrace-client".into()], &ca),
        untrusted_client: leaf(vec!["qtrace-client".into()], &rogue),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_for_clients_and_peers() {
    let temp = tempfile::tempdir().unwrap();
    let pki = pki();
    let ca = write(temp.path(), "ca.pem", &pki.ca_pem);
    let cert = write(temp.path(), "server.pem", &pki.server.0);
    let key = write(temp.path(), "server.key", &pki.server.1);
    let tls_args = ["--tls-cert", &cert, "--tls-key", &key, "--tls-client-ca", &ca];

    let a = Planned::new(temp.path(), "tls-a", 61);
    let mut node_a = a.start(&[], &tls_args);
    let https = format!("https://localhost:{}", a.listen.rsplit(':').next().unwrap());

    // A client with the CA and a client certificate gets through.
    let tls = Tls {
        ca_pem: pki.ca_pem.clone().into_bytes(),
        identity: Some((pki.client.0.clone().into_bytes(), pki.client.1.clone().into_bytes())),
    };
    let mut client = connect_with(&https, Some(&tls)).await.expect("mutual TLS connection");
    let info = client.get_log_info(pb::GetLogInfoRequest {}).await.expect("served over TLS").into_inner();
    assert_eq!(info.log_id, node_a.log_id().0.to_vec());

    // Without a client certificate the handshake or the first call fails.
    let anonymous = Tls { ca_pem: pki.ca_pem.clone().into_bytes(), identity: None };
    let refused = match connect_with(&https, Some(&anonymous)).await {
        Err(_) => true,
        Ok(mut c) => c.get_log_info(pb::GetLogInfoRequest {}).await.is_err(),
    };
    assert!(refused, "a client without a certificate is refused");
    // A client certificate from a CA the node does not trust is refused too.
    let untrusted = Tls {
        ca_pem: pki.ca_pem.clone().into_bytes(),
        identity: Some((pki.untrusted_client.0.clone().into_bytes(), pki.untrusted_client.1.clone().into_bytes())),
    };
    let refused = match connect_with(&https, Some(&untrusted)).await {
        Err(_) => true,
        Ok(mut c) => c.get_log_info(pb::GetLogInfoRequest {}).await.is_err(),
    };
    assert!(refused, "a client certificate from an untrusted CA is refused");
    // Plaintext to a TLS port fails too.
    let plain = format!("http://{}", a.listen);
    let refused = match connect_with(&plain, None).await {
        Err(_) => true,
        Ok(mut c) => c.get_log_info(pb::GetLogInfoRequest {}).await.is_err(),
    };
    assert!(refused, "plaintext is not served on the TLS port");

    // The command line speaks TLS too.
    let client_cert = write(temp.path(), "client.pem", &pki.client.0);
    let client_key = write(temp.path(), "client.key", &pki.client.1);
    let output = Command::new(binary("qtrace"))
        .args(["--node", &https, "--ca", &ca, "--tls-cert", &client_cert, "--tls-key", &client_key, "--json"])
        .args(["checkpoint"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["size"], 1);
    let output = Command::new(binary("qtrace")).args(["--node", &https, "checkpoint"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "https without --ca is a usage error");

    // A peer mirrors A over mutual TLS.
    let b = Planned::new(temp.path(), "tls-b", 62);
    let a_https = Planned { url: https.clone(), ..Planned::new(temp.path(), "unused", 63) };
    let a_peer = format!("{}={},{}", a.label, a_https.url, a.vkey);
    let node_b = Node::start_in(
        &b.data,
        &[
            "--name",
            &b.origin,
            "--listen",
            &b.listen,
            "--mirror-interval-ms",
            "100",
            "--peer",
            &a_peer,
            "--peer-ca",
            &ca,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
    );
    let b_tls = Tls { ca_pem: pki.ca_pem.clone().into_bytes(), identity: tls.identity.clone() };
    let b_url = format!("https://localhost:{}", b.listen.rsplit(':').next().unwrap());
    let b_client = connect_with(&b_url, Some(&b_tls)).await.expect("B serves TLS");
    let a_log = node_a.log_id();
    eventually(60, "B mirroring A over TLS", || {
        let mut c = b_client.clone();
        async move { (held(&mut c, &a_log).await >= 1).then_some(()) }
    })
    .await;
    drop(node_b);
    assert!(node_a.stop().success());
}

#[test]
fn plaintext_off_loopback_needs_an_explicit_flag() {
    let temp = tempfile::tempdir().unwrap();
    let output = Command::new(binary("qtrace-node"))
        .args(["--data"])
        .arg(temp.path().join("data"))
        .args(["--listen", "0.0.0.0:0", "--no-http"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refusing to serve plaintext"), "{stderr}");
}
