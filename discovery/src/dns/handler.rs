//! Answers one DNS request from the registry: hickory-server parses and
//! encodes (with truncation and EDNS), this picks the records.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Edns, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA, SOA, SRV};
use hickory_server::proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use rand::seq::SliceRandom;

use super::cache::Cache;
use super::names::{self, Endpoint, Target};
use crate::ServiceInstance;

pub(crate) struct Handler {
    pub(crate) domain: LowerName,
    pub(crate) ttl: u32,
    pub(crate) cache: Arc<Cache>,
}

/// The records of one reply.
#[derive(Default)]
struct Reply {
    code: ResponseCode,
    answers: Vec<Record>,
    additionals: Vec<Record>,
    /// Whether the domain's SOA goes in the authority section (negative
    /// answers, so resolvers cache them for the SOA minimum: the TTL).
    soa: bool,
}

impl Reply {
    fn code(code: ResponseCode) -> Reply {
        Reply {
            code,
            ..Reply::default()
        }
    }
    fn negative(code: ResponseCode) -> Reply {
        Reply {
            code,
            soa: true,
            ..Reply::default()
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        // EDNS as hickory's catalog does it: echo a buffer size of at
        // least 512, version 0, BADVERS for anything newer.
        let edns = request.edns.as_ref().map(|req| {
            let mut e = Edns::new();
            e.set_max_payload(req.max_payload().max(512));
            e.set_version(0);
            (e, req.version())
        });
        let reply = match &edns {
            Some((_, v)) if *v > 0 => Reply::code(ResponseCode::BADVERS),
            _ => self.answer(request).await,
        };
        let mut edns = edns.map(|(e, _)| e);
        if let Some(e) = edns.as_mut() {
            // Extended codes (BADVERS) keep their high bits in the OPT record.
            e.set_rcode_high(reply.code.high());
        }
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.response_code = reply.code;
        meta.authoritative = matches!(reply.code, ResponseCode::NoError | ResponseCode::NXDomain);
        let soa = reply.soa.then(|| self.soa());
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let response = builder.build(
            meta,
            reply.answers.iter(),
            std::iter::empty(),
            soa.iter(),
            reply.additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                tracing::debug!(%error, "dns: cannot send a response");
                let mut meta = Metadata::response_from_request(&request.metadata);
                meta.response_code = ResponseCode::ServFail;
                ResponseInfo::from(hickory_server::proto::op::Header {
                    metadata: meta,
                    counts: Default::default(),
                })
            }
        }
    }
}

impl Handler {
    async fn answer(&self, request: &Request) -> Reply {
        if request.metadata.op_code != OpCode::Query {
            return Reply::code(ResponseCode::NotImp);
        }
        let Ok(info) = request.request_info() else {
            // Not exactly one question.
            return Reply::code(ResponseCode::FormErr);
        };
        let query = info.query;
        let name = query.name();
        if query.query_class() != DNSClass::IN || !self.domain.zone_of(name) {
            // Not ours: an authoritative-only server refuses, it does not
            // recurse.
            return Reply::code(ResponseCode::Refused);
        }
        let owner = query.original().name().clone();
        let qtype = query.query_type();
        let labels: Vec<&[u8]> = name.iter().collect();
        let own = labels.len().saturating_sub(self.domain.iter().count());
        match names::parse(&labels[..own]) {
            Target::Service { service, tag } => match self.cache.instances(&service).await {
                Ok(list) => self.service(owner, qtype, list, tag.as_deref()),
                Err(e) => {
                    tracing::warn!(%service, %e, "dns: no answer from the registry");
                    Reply::code(ResponseCode::ServFail)
                }
            },
            Target::Addr(ip) => {
                let answers = self.ip_records(&owner, qtype, [ip]);
                self.records(answers, Vec::new())
            }
            Target::Apex if qtype == RecordType::SOA => self.records(vec![self.soa()], Vec::new()),
            Target::Apex => Reply::negative(ResponseCode::NoError),
            Target::Unknown => Reply::negative(ResponseCode::NXDomain),
        }
    }

    /// NOERROR with `answers`, or NODATA (with the SOA) when there are none.
    fn records(&self, answers: Vec<Record>, additionals: Vec<Record>) -> Reply {
        if answers.is_empty() {
            return Reply::negative(ResponseCode::NoError);
        }
        Reply {
            code: ResponseCode::NoError,
            answers,
            additionals,
            soa: false,
        }
    }

    /// The answer for a service's instances (already health-filtered).
    fn service(
        &self,
        owner: Name,
        qtype: RecordType,
        mut list: Vec<ServiceInstance>,
        tag: Option<&str>,
    ) -> Reply {
        // Tags compare case-insensitively: resolvers may change the case
        // of a name (0x20 randomisation), so the query's case means nothing.
        if let Some(tag) = tag {
            list.retain(|i| i.tags.iter().any(|t| t.eq_ignore_ascii_case(tag)));
        }
        if list.is_empty() {
            // No healthy instance: the name does not exist (Consul's answer).
            return Reply::negative(ResponseCode::NXDomain);
        }
        let endpoints: Vec<Endpoint> = list
            .iter()
            .flat_map(|i| i.addrs.iter().filter_map(|a| names::endpoint(a)))
            .collect();
        match qtype {
            RecordType::A | RecordType::AAAA | RecordType::ANY => {
                let ips = endpoints.iter().filter_map(|e| match e {
                    Endpoint::Socket(sa) => Some(sa.ip()),
                    Endpoint::Ip(ip) => Some(*ip),
                    Endpoint::Host(..) => None,
                });
                let answers = self.ip_records(&owner, qtype, ips);
                self.records(answers, Vec::new())
            }
            RecordType::SRV => self.srv(&owner, &endpoints),
            _ => Reply::negative(ResponseCode::NoError),
        }
    }

    /// A/AAAA records for `ips` (deduplicated, shuffled) matching `qtype`.
    fn ip_records(
        &self,
        owner: &Name,
        qtype: RecordType,
        ips: impl IntoIterator<Item = IpAddr>,
    ) -> Vec<Record> {
        let want_v4 = matches!(qtype, RecordType::A | RecordType::ANY);
        let want_v6 = matches!(qtype, RecordType::AAAA | RecordType::ANY);
        let set: BTreeSet<IpAddr> = ips
            .into_iter()
            .filter(|ip| if ip.is_ipv4() { want_v4 } else { want_v6 })
            .collect();
        let mut records: Vec<Record> = set
            .into_iter()
            .map(|ip| Record::from_rdata(owner.clone(), self.ttl, ip_rdata(ip)))
            .collect();
        records.shuffle(&mut rand::rng());
        records
    }

    /// SRV records (one per distinct target and port, shuffled), with the
    /// A/AAAA of synthetic `<hex>.addr` targets as additional records.
    fn srv(&self, owner: &Name, endpoints: &[Endpoint]) -> Reply {
        let mut targets: BTreeSet<(Name, u16)> = BTreeSet::new();
        let mut additionals = Vec::new();
        for e in endpoints {
            let (target, port) = match e {
                Endpoint::Socket(sa) => {
                    let label = names::encode_addr(sa.ip());
                    let Some(name) = self.name(&format!("{label}.addr")) else {
                        continue;
                    };
                    if !targets.iter().any(|(n, _)| n == &name) {
                        additionals.push(Record::from_rdata(
                            name.clone(),
                            self.ttl,
                            ip_rdata(sa.ip()),
                        ));
                    }
                    (name, sa.port())
                }
                Endpoint::Host(host, port) => match Name::from_ascii(format!("{host}.")) {
                    Ok(name) => (name, *port),
                    Err(_) => continue,
                },
                Endpoint::Ip(_) => continue,
            };
            targets.insert((target, port));
        }
        let mut answers: Vec<Record> = targets
            .into_iter()
            .map(|(target, port)| {
                // Priority and weight 1, as Consul's: every instance is equal.
                let srv = SRV::new(1, 1, port, target);
                Record::from_rdata(owner.clone(), self.ttl, RData::SRV(srv))
            })
            .collect();
        answers.shuffle(&mut rand::rng());
        self.records(answers, additionals)
    }

    /// `<relative>.<domain>` as a name.
    fn name(&self, relative: &str) -> Option<Name> {
        Name::from_ascii(relative)
            .ok()?
            .append_domain(&Name::from(self.domain.clone()))
            .ok()
    }

    /// The domain's SOA: its minimum (the negative-answer TTL) is the TTL.
    fn soa(&self) -> Record {
        let apex = Name::from(self.domain.clone());
        let ns = self.name("ns").unwrap_or_else(|| apex.clone());
        let mbox = self.name("hostmaster").unwrap_or_else(|| apex.clone());
        // The zone is synthesized; a time-based serial only grows.
        let serial = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(1);
        let soa = SOA::new(ns, mbox, serial, 3600, 600, 86400, self.ttl);
        Record::from_rdata(apex, self.ttl, RData::SOA(soa))
    }
}

fn ip_rdata(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}
