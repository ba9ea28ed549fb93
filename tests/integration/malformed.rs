//! A catalogue of bad requests against one running node, each with the
//! exact gRPC code and a piece of the message it must get. Afterwards the
//! node still serves and its log holds exactly the legitimate records.

use prost::Message;
use prost::bytes::{Buf, BufMut};
use qtrace_client::rpc::ledger_client::LedgerClient;
use qtrace_ledger::pb::{self, event::Body};
use qtrace_tests::*;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// One request to the node.
enum Call {
    Append(pb::AppendRequest),
    /// Bytes sent as the body of an Append call, whatever they are.
    AppendRawBytes(Vec<u8>),
    Batch(pb::AppendBatchRequest),
    GetEntry(pb::GetEntryRequest),
    Inclusion(pb::GetInclusionProofRequest),
    Consistency(pb::GetConsistencyProofRequest),
    Query(pb::QueryRequest),
    Trace(pb::TraceRequest),
    Verify(pb::VerifyRequest),
    Cosign(pb::AddCosignatureRequest),
}

/// What the node must answer.
enum Expect {
    Refused(Code, &'static str),
    /// Accepted as a duplicate of entry `seq`: the same receipt, no new entry.
    Duplicate(u64),
}

/// Sends a call; an accepted append answers with its receipt.
async fn send(client: &mut LedgerClient<Channel>, url: &str, call: Call) -> Result<Option<pb::AppendReceipt>, Status> {
    match call {
        Call::Append(r) => client.append(r).await.map(|r| Some(r.into_inner())),
        Call::AppendRawBytes(bytes) => {
            let channel = Channel::from_shared(url.to_string()).expect("url").connect().await.expect("connect");
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready().await.expect("channel ready");
            let path = tonic::codegen::http::uri::PathAndQuery::from_static("/qtrace.v1.Ledger/Append");
            grpc.unary(tonic::Request::new(bytes), path, RawCodec).await.map(|_| None)
        }
        Call::Batch(r) => client.append_batch(r).await.map(|_| None),
        Call::GetEntry(r) => client.get_entry(r).await.map(|_| None),
        Call::Inclusion(r) => client.get_inclusion_proof(r).await.map(|_| None),
        Call::Consistency(r) => client.get_consistency_proof(r).await.map(|_| None),
        Call::Query(r) => client.query(r).await.map(|_| None),
        Call::Trace(r) => client.trace(r).await.map(|_| None),
        Call::Verify(r) => client.verify(r).await.map(|_| None),
        Call::Cosign(r) => client.add_cosignature(r).await.map(|_| None),
    }
}

/// A gRPC codec that sends raw bytes as the message and reads the reply as
/// raw bytes, to put bytes on the wire that are no protobuf message at all.
struct RawCodec;

struct RawEncoder;

struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        Ok(Some(bytes.to_vec()))
    }
}

fn append(signed: pb::SignedEvent) -> Call {
    Call::Append(pb::AppendRequest { event: Some(signed) })
}

/// `bytes` as an event, correctly signed by `actor`: whatever the node
/// refuses, it is not the signature.
fn signed_bytes(actor: &Actor, bytes: Vec<u8>) -> pb::SignedEvent {
    pb::SignedEvent {
        signature: actor.key.sign_event(&bytes).to_vec(),
        signer: actor.key.public_key().to_bytes().to_vec(),
        event: bytes,
    }
}

fn at_time(mut e: pb::Event, unix_millis: i64, offset_minutes: i32) -> pb::Event {
    e.event_time = Some(pb::EventTime { unix_millis, offset_minutes });
    e
}

fn with_parents(mut e: pb::Event, parents: Vec<pb::RecordRef>) -> pb::Event {
    e.parents = parents;
    e
}

fn with_production(mut e: pb::Event, edit: impl FnOnce(&mut pb::Production)) -> pb::Event {
    if let Some(Body::Production(p)) = e.body.as_mut() {
        edit(p);
    }
    e
}

/// A receipt from a refusal-free append, counted as legitimate.
async fn legit(
    client: &mut LedgerClient<Channel>,
    actor: &Actor,
    event: pb::Event,
    count: &mut u64,
) -> pb::AppendReceipt {
    let receipt = actor.append(client, event).await.expect("a legitimate append");
    *count += 1;
    receipt
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_exact_codes_and_write_nothing() {
    let node = Node::start();
    let mut client = node.client().await;
    let cast = Cast::register(&node, &mut client).await;
    // Genesis and the cast's four organisations and four keys.
    let mut legitimate: u64 = 1 + 8;

    // The few legitimate records the bad requests refer to.
    let produced = legit(&mut client, &cast.factory, production(GTIN, "MAL-OK-1"), &mut legitimate).await;
    let replayed = cast.factory.sign(&production(GTIN, "MAL-OK-2"));
    let original = client
        .append(pb::AppendRequest { event: Some(replayed.clone()) })
        .await
        .expect("the original of the replay")
        .into_inner();
    legitimate += 1;
    legit(&mut client, &cast.body, certificate(CERT_BODY, "CQC-MAL", FACTORY, GTIN, vec![]), &mut legitimate).await;
    let farm = Actor::new(21, FARM);
    let farm_org = register_org(FARM, "Listed Dairy Farm (失信牧场)", &[pb::Role::Manufacturer], &[]);
    legit(&mut client, &cast.root, farm_org, &mut legitimate).await;
    legit(&mut client, &cast.root, register_key(&farm, "赵六", "场长"), &mut legitimate).await;
    let listing = blacklisting(FARM);
    legit(&mut client, &cast.root, listing, &mut legitimate).await;
    let size = client.get_log_info(pb::GetLogInfoRequest {}).await.expect("log info").into_inner().size;
    assert_eq!(size, legitimate, "the setup appended what it counted");

    let good = production(GTIN, "MAL-BAD-1");
    let good_bytes = good.encode_to_vec();
    let mut unknown_field = good_bytes.clone();
    unknown_field.extend_from_slice(&[0x98, 0x06, 0x01]); // field 99, varint 1
    let mut oversize = production(GTIN, "MAL-BIG");
    oversize.attributes =
        (0..40).map(|i| pb::Attribute { name: format!("padding-{i}"), value: "x".repeat(1_900) }).collect();
    let signed = cast.factory.sign(&good);
    let short_signature = pb::SignedEvent { signature: signed.signature[..63].to_vec(), ..signed.clone() };
    let long_signature = {
        let mut s = signed.clone();
        s.signature.push(0);
        s
    };
    let short_signer = pb::SignedEvent { signer: signed.signer[..31].to_vec(), ..signed.clone() };
    // The identity point: a valid encoding of a point of order 1.
    let mut identity = vec![0u8; 32];
    identity[0] = 1;
    let weak_signer = pb::SignedEvent { signer: identity, ..signed.clone() };
    let other_bytes = pb::SignedEvent { event: production(GTIN, "MAL-BAD-2").encode_to_vec(), ..signed.clone() };
    let parent = record_ref(&produced);
    let short_log_id = pb::RecordRef { log_id: parent.log_id[..31].to_vec(), ..parent.clone() };
    let unknown_parent = pb::RecordRef { seq: 9_999, ..parent.clone() };
    let wrong_parent_hash = pb::RecordRef { entry_hash: vec![0; 32], ..parent.clone() };
    let report = |n: &str| inspection(GTIN, "MAL-OK-1", n, true);
    let now = now_millis();
    let restore = cert_change(
        CERT_BODY,
        "CQC-MAL",
        Body::CertificateRestored(pb::CertificateRestored {
            certificate: Some(cert_key(CERT_BODY, "CQC-MAL")),
            reason: "never suspended".into(),
        }),
    );
    let mut no_body = production(GTIN, "MAL-BAD-3");
    no_body.body = None;
    let mut no_subject = production(GTIN, "MAL-BAD-4");
    no_subject.subject = None;
    let seq_key = |seq| Some(pb::get_entry_request::Key::Seq(seq));
    let record = |r: pb::RecordRef| Some(pb::VerdictSubject { kind: Some(pb::verdict_subject::Kind::Record(r)) });

    use Code::{FailedPrecondition, Internal, InvalidArgument, NotFound, PermissionDenied, Unauthenticated};
    use Expect::*;
    let cases: Vec<(&str, Call, Expect)> = vec![
        (
            "request bytes that are no protobuf message",
            Call::AppendRawBytes(vec![0xff; 16]),
            Refused(Internal, "decode"),
        ),
        (
            "append without an event",
            Call::Append(pb::AppendRequest { event: None }),
            Refused(InvalidArgument, "event: is required"),
        ),
        (
            "garbage event bytes",
            append(signed_bytes(&cast.factory, vec![0xff; 10])),
            Refused(InvalidArgument, "not a protobuf"),
        ),
        ("empty event", append(signed_bytes(&cast.factory, Vec::new())), Refused(InvalidArgument, "event is empty")),
        ("event over 65,536 bytes", append(cast.factory.sign(&oversize)), Refused(InvalidArgument, "at most 65536")),
        (
            "unknown field appended",
            append(signed_bytes(&cast.factory, unknown_field)),
            Refused(InvalidArgument, "canonical"),
        ),
        ("63-byte signature", append(short_signature), Refused(Unauthenticated, "64 bytes, found 63")),
        ("65-byte signature", append(long_signature), Refused(Unauthenticated, "64 bytes, found 65")),
        (
            "signature by an unknown key",
            append(Actor::new(99, FACTORY).sign(&good)),
            Refused(PermissionDenied, "not registered"),
        ),
        ("31-byte signer key", append(short_signer), Refused(Unauthenticated, "32 bytes, found 31")),
        ("small-order signer key", append(weak_signer), Refused(Unauthenticated, "small order")),
        ("signature over other bytes", append(other_bytes), Refused(Unauthenticated, "does not verify")),
        (
            "65 parents",
            append(cast.lab.sign(&with_parents(report("MAL-R-1"), vec![parent.clone(); 65]))),
            Refused(InvalidArgument, "at most 64"),
        ),
        (
            "parent with a 31-byte log id",
            append(cast.lab.sign(&with_parents(report("MAL-R-2"), vec![short_log_id]))),
            Refused(InvalidArgument, "parents[0].log_id"),
        ),
        (
            "event in 1970",
            append(cast.factory.sign(&at_time(good.clone(), 1_000, 480))),
            Refused(InvalidArgument, "2000-01-01"),
        ),
        (
            "event in 2200",
            append(cast.factory.sign(&at_time(good.clone(), 7_258_118_400_000, 480))),
            Refused(InvalidArgument, "2100-01-01"),
        ),
        (
            "event 3 days in the future",
            append(cast.factory.sign(&at_time(good.clone(), now + 3 * 86_400_000, 480))),
            Refused(InvalidArgument, "24 hours"),
        ),
        (
            "zone offset of 15 hours",
            append(cast.factory.sign(&at_time(good.clone(), now, 900))),
            Refused(InvalidArgument, "offset"),
        ),
        (
            "GTIN check digit",
            append(cast.factory.sign(&production("09520123456789", "L1"))),
            Refused(InvalidArgument, "check digit"),
        ),
        (
            "USCC check character",
            append(cast.factory.sign(&shipment(GTIN, "MAL-OK-1", FACTORY, "91310000MA1K2Q7A5M", vec![]))),
            Refused(InvalidArgument, "USCC check character"),
        ),
        (
            "GLN check digit",
            append(cast.factory.sign(&with_production(good.clone(), |p| p.factory_gln = "0614141000013".into()))),
            Refused(InvalidArgument, "factory_gln"),
        ),
        (
            "lot of 21 characters",
            append(cast.factory.sign(&production(GTIN, "ABCDEFGHIJKLMNOPQRSTU"))),
            Refused(InvalidArgument, "lot"),
        ),
        (
            "30 February",
            append(cast.factory.sign(&with_production(good.clone(), |p| p.production_date = "2026-02-30".into()))),
            Refused(InvalidArgument, "production_date"),
        ),
        (
            "restoring an active certificate",
            append(cast.body.sign(&restore)),
            Refused(FailedPrecondition, "not allowed"),
        ),
        (
            "manufacturer signs an inspection",
            append(cast.factory.sign(&report("MAL-R-3"))),
            Refused(PermissionDenied, "testing lab"),
        ),
        (
            "retailer produces",
            append(cast.retailer.sign(&production(GTIN, "MAL-BAD-5"))),
            Refused(PermissionDenied, "manufacturer"),
        ),
        (
            "blacklisted manufacturer produces",
            append(farm.sign(&production(GTIN, "MAL-BAD-6"))),
            Refused(FailedPrecondition, "blacklist"),
        ),
        ("replay of a signed event", append(replayed.clone()), Duplicate(original.seq)),
        (
            "batch of 1,001 events",
            Call::Batch(pb::AppendBatchRequest {
                events: (0..1_001).map(|i| cast.factory.sign(&production(GTIN, &format!("MAL-B{i}")))).collect(),
            }),
            Refused(InvalidArgument, "at most 1000"),
        ),
        (
            "unknown parent",
            append(cast.lab.sign(&with_parents(report("MAL-R-4"), vec![unknown_parent]))),
            Refused(NotFound, "not in the ledger"),
        ),
        (
            "wrong parent hash",
            append(cast.lab.sign(&with_parents(report("MAL-R-5"), vec![wrong_parent_hash]))),
            Refused(InvalidArgument, "entry hash"),
        ),
        (
            "certificate issued for another body",
            append(cast.body.sign(&certificate(LAB, "CQC-NOT-MINE", FACTORY, GTIN, vec![]))),
            Refused(PermissionDenied, "issuer_uscc"),
        ),
        ("event without a body", append(cast.factory.sign(&no_body)), Refused(InvalidArgument, "body: is required")),
        (
            "event without a subject",
            append(cast.factory.sign(&no_subject)),
            Refused(InvalidArgument, "subject: is required"),
        ),
        (
            "GetEntry past the end",
            Call::GetEntry(pb::GetEntryRequest { key: seq_key(1_000_000), ..Default::default() }),
            Refused(NotFound, "does not exist"),
        ),
        ("GetEntry without a key", Call::GetEntry(pb::GetEntryRequest::default()), Refused(InvalidArgument, "key")),
        (
            "inclusion proof in a tree larger than the log",
            Call::Inclusion(pb::GetInclusionProofRequest {
                key: Some(pb::get_inclusion_proof_request::Key::Seq(1)),
                tree_size: 1_000_000,
                ..Default::default()
            }),
            Refused(InvalidArgument, "tree_size"),
        ),
        (
            "consistency proof from a larger to a smaller tree",
            Call::Consistency(pb::GetConsistencyProofRequest { old_size: 5, new_size: 3, ..Default::default() }),
            Refused(InvalidArgument, "old_size"),
        ),
        (
            "query with a page token the node never issued",
            Call::Query(pb::QueryRequest {
                key: Some(pb::query_request::Key::OrganisationUscc(FACTORY.into())),
                page_token: "not-a-token".into(),
                ..Default::default()
            }),
            Refused(InvalidArgument, "page_token"),
        ),
        (
            "trace deeper than the node allows",
            Call::Trace(pb::TraceRequest {
                start: record(parent.clone()),
                direction: pb::TraceDirection::Upstream as i32,
                max_depth: 65,
                max_nodes: 0,
            }),
            Refused(InvalidArgument, "max_depth"),
        ),
        ("verify without a subject", Call::Verify(pb::VerifyRequest::default()), Refused(InvalidArgument, "subject")),
        (
            "garbage cosignature",
            Call::Cosign(pb::AddCosignatureRequest { size, cosignature: "garbage".into() }),
            Refused(InvalidArgument, "cosignature"),
        ),
    ];
    assert!(cases.len() >= 30, "the catalogue has {} cases", cases.len());

    let mut failures = Vec::new();
    for (name, call, expect) in cases {
        let result = send(&mut client, &node.url, call).await;
        match (expect, result) {
            (Refused(code, needle), Err(status)) => {
                if status.code() != code || !status.message().contains(needle) {
                    failures.push(format!(
                        "{name}: expected {code:?} containing {needle:?}, got {:?}: {}",
                        status.code(),
                        status.message()
                    ));
                }
            }
            (Duplicate(seq), Ok(Some(receipt))) => {
                if !(receipt.duplicate && receipt.seq == seq && receipt.entry_hash == original.entry_hash) {
                    failures
                        .push(format!("{name}: expected the receipt of entry {seq} as a duplicate, got {receipt:?}"));
                }
            }
            (Refused(code, _), Ok(_)) => failures.push(format!("{name}: expected {code:?}, but it was accepted")),
            (Duplicate(seq), other) => {
                failures.push(format!("{name}: expected a duplicate of entry {seq}, got {other:?}"))
            }
        }
    }

    // The node still serves, and nothing but the legitimate records is in it.
    let info = client.get_log_info(pb::GetLogInfoRequest {}).await.expect("the node still serves").into_inner();
    assert_eq!(info.size, legitimate, "the log holds exactly the legitimate records");
    assert!(
        failures.is_empty(),
        "{} of the bad requests got the wrong answer:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
