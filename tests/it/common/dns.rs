//! A tiny authoritative DNS server on loopback UDP, for backend-name tests: every
//! A query is answered with the addresses set now (TTL 1 s), AAAA with none; or,
//! while failing, every query gets SERVFAIL. Each query is counted.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hickory_resolver::proto::op::{Message, ResponseCode};
use hickory_resolver::proto::rr::rdata::A;
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;

pub struct DnsServer {
    pub addr: SocketAddr,
    answers: Arc<Mutex<Vec<Ipv4Addr>>>,
    failing: Arc<AtomicBool>,
    pub queries: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DnsServer {
    pub async fn start(answers: &[Ipv4Addr]) -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let answers = Arc::new(Mutex::new(answers.to_vec()));
        let failing = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicUsize::new(0));
        let (a, f, q) = (answers.clone(), failing.clone(), queries.clone());
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                q.fetch_add(1, Ordering::Relaxed);
                let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
                reply.metadata.recursion_desired = query.metadata.recursion_desired;
                reply.metadata.recursion_available = true;
                reply.metadata.authoritative = true;
                for question in &query.queries {
                    reply.add_query(question.clone());
                    if f.load(Ordering::Relaxed) {
                        reply.metadata.response_code = ResponseCode::ServFail;
                        continue;
                    }
                    if question.query_type() == RecordType::A {
                        for ip in a.lock().unwrap().iter() {
                            let rdata = RData::A(A(*ip));
                            reply.add_answer(Record::from_rdata(question.name().clone(), 1, rdata));
                        }
                    }
                }
                if let Ok(bytes) = reply.to_vec() {
                    let _ = socket.send_to(&bytes, peer).await;
                }
            }
        });
        DnsServer {
            addr,
            answers,
            failing,
            queries,
            task,
        }
    }

    /// Answers A queries with these from now on.
    pub fn answer(&self, ips: &[Ipv4Addr]) {
        *self.answers.lock().unwrap() = ips.to_vec();
        self.failing.store(false, Ordering::Relaxed);
    }

    /// Answers every query with SERVFAIL from now on.
    pub fn fail(&self) {
        self.failing.store(true, Ordering::Relaxed);
    }
}
