//! Names of ends outside the cluster: the DNS name a client asked for before it connected to an
//! address (learned from the answers the kernel programs capture), else the label of a
//! configured address range. Times are CLOCK_MONOTONIC nanoseconds, as the kernel stamps its
//! events, passed in by the caller so that expiry is tested without waiting.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use crate::dns::{self, AnswerData, Rcode};

use super::Cidr;

const NS_PER_SEC: u64 = 1_000_000_000;
/// Longest CNAME chain followed from the question; resolvers give up well before.
const MAX_CNAME_HOPS: usize = 16;

/// Address → the name the client queried, until the answer's TTL (or the floor) passes.
#[derive(Debug)]
pub struct DnsNames {
    by_ip: HashMap<IpAddr, DnsName>,
    /// (expiry, address) of every entry, soonest first: expired entries are dropped from the
    /// front, and when full the entry that would expire next makes room.
    expiry: BTreeSet<(u64, IpAddr)>,
    capacity: usize,
    min_ttl_ns: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct DnsName {
    name: String,
    expires_ns: u64,
}

impl DnsNames {
    pub fn new(capacity: usize, min_ttl_secs: u64) -> DnsNames {
        debug_assert!(capacity > 0);
        DnsNames {
            by_ip: HashMap::new(),
            expiry: BTreeSet::new(),
            capacity,
            min_ttl_ns: min_ttl_secs.saturating_mul(NS_PER_SEC),
        }
    }

    /// Learns from a response: every address reached from the question name through CNAMEs
    /// maps to the question name, for the shortest TTL on its chain. Other responses teach
    /// nothing.
    pub fn observe(&mut self, message: &dns::Message, now_ns: u64) {
        self.expire(now_ns);
        if !message.is_response() || message.rcode != Rcode::NoError {
            return;
        }
        let Some(question) = &message.question else {
            return;
        };
        // The names the question leads to, with the shortest TTL on the way to each.
        let mut chain: HashMap<&str, u32> = HashMap::from([(question.name.as_str(), u32::MAX)]);
        let mut frontier = vec![question.name.as_str()];
        let mut seen: HashSet<&str> = HashSet::from([question.name.as_str()]);
        for _ in 0..MAX_CNAME_HOPS {
            let mut next = Vec::new();
            for answer in &message.answers {
                let AnswerData::Cname(target) = &answer.data else {
                    continue;
                };
                if frontier.contains(&answer.name.as_str()) && seen.insert(target.as_str()) {
                    let ttl = chain[answer.name.as_str()].min(answer.ttl);
                    chain.insert(target.as_str(), ttl);
                    next.push(target.as_str());
                }
            }
            if next.is_empty() {
                break;
            }
            frontier = next;
        }
        for answer in &message.answers {
            let AnswerData::Address(ip) = answer.data else {
                continue;
            };
            let Some(&chain_ttl) = chain.get(answer.name.as_str()) else {
                continue;
            };
            let ttl_ns = u64::from(chain_ttl.min(answer.ttl)) * NS_PER_SEC;
            let expires_ns = now_ns.saturating_add(ttl_ns.max(self.min_ttl_ns));
            self.insert(ip.to_canonical(), question.name.clone(), expires_ns);
        }
    }

    fn insert(&mut self, ip: IpAddr, name: String, expires_ns: u64) {
        if let Some(old) = self.by_ip.remove(&ip) {
            self.expiry.remove(&(old.expires_ns, ip));
        }
        while self.by_ip.len() >= self.capacity {
            let Some((_, soonest)) = self.expiry.pop_first() else {
                break;
            };
            self.by_ip.remove(&soonest);
        }
        self.expiry.insert((expires_ns, ip));
        self.by_ip.insert(ip, DnsName { name, expires_ns });
    }

    fn expire(&mut self, now_ns: u64) {
        while let Some(&(expires_ns, ip)) = self.expiry.first() {
            if expires_ns > now_ns {
                break;
            }
            self.expiry.pop_first();
            self.by_ip.remove(&ip);
        }
    }

    pub fn lookup(&self, ip: IpAddr, now_ns: u64) -> Option<&str> {
        self.by_ip
            .get(&ip.to_canonical())
            .filter(|entry| entry.expires_ns > now_ns)
            .map(|entry| entry.name.as_str())
    }

    /// Entries held, expired ones not yet dropped included.
    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }
}

/// Configured ranges, longest prefix first, then the link-local ranges every host has
/// (169.254.0.0/16, fe80::/10) under the label `link-local` unless configured otherwise.
#[derive(Clone, Debug)]
pub struct CidrLabels {
    ranges: Vec<(Cidr, String)>,
}

pub const LINK_LOCAL: &str = "link-local";

impl CidrLabels {
    pub fn new<'a>(configured: impl IntoIterator<Item = (&'a Cidr, &'a String)>) -> CidrLabels {
        let mut ranges: Vec<(Cidr, String)> = configured
            .into_iter()
            .map(|(cidr, label)| (*cidr, label.clone()))
            .collect();
        for builtin in ["169.254.0.0/16", "fe80::/10"] {
            let cidr: Cidr = builtin.parse().expect("a valid built-in prefix");
            if !ranges.iter().any(|(known, _)| *known == cidr) {
                ranges.push((cidr, LINK_LOCAL.to_owned()));
            }
        }
        ranges.sort_by_key(|(cidr, _)| std::cmp::Reverse(cidr.prefix_len()));
        CidrLabels { ranges }
    }

    /// The label of the longest prefix holding `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<&str> {
        let ip = ip.to_canonical();
        self.ranges
            .iter()
            .find(|(cidr, _)| cidr.contains(ip))
            .map(|(_, label)| label.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::{record_type, Answer, Message, Question};

    const SEC: u64 = NS_PER_SEC;

    fn answer(name: &str, ttl: u32, data: AnswerData) -> Answer {
        let rtype = match data {
            AnswerData::Address(IpAddr::V4(_)) => record_type::A,
            AnswerData::Address(IpAddr::V6(_)) => record_type::AAAA,
            AnswerData::Cname(_) => record_type::CNAME,
            AnswerData::Other => 16,
        };
        Answer {
            name: name.into(),
            rtype,
            ttl,
            data,
        }
    }

    fn address(name: &str, ttl: u32, ip: &str) -> Answer {
        answer(name, ttl, AnswerData::Address(ip.parse().unwrap()))
    }

    fn cname(name: &str, ttl: u32, target: &str) -> Answer {
        answer(name, ttl, AnswerData::Cname(target.into()))
    }

    fn response(qname: &str, answers: Vec<Answer>) -> Message {
        Message {
            id: 1,
            flags: 0x8180,
            rcode: Rcode::NoError,
            question: Some(Question {
                name: qname.into(),
                qtype: record_type::A,
                qclass: 1,
            }),
            answers,
            truncated: false,
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn addresses_map_to_the_name_queried_until_the_ttl_passes() {
        let mut names = DnsNames::new(16, 0);
        names.observe(
            &response(
                "api.example.com",
                vec![
                    address("api.example.com", 60, "203.0.113.10"),
                    address("api.example.com", 60, "2001:db8::10"),
                ],
            ),
            100 * SEC,
        );
        assert_eq!(
            names.lookup(ip("203.0.113.10"), 100 * SEC),
            Some("api.example.com")
        );
        assert_eq!(
            names.lookup(ip("::ffff:203.0.113.10"), 159 * SEC),
            Some("api.example.com")
        );
        assert_eq!(
            names.lookup(ip("2001:db8::10"), 159 * SEC),
            Some("api.example.com")
        );
        assert_eq!(names.lookup(ip("203.0.113.10"), 160 * SEC), None);
        assert_eq!(names.len(), 2);
        names.observe(&response("other.example", vec![]), 161 * SEC);
        assert!(
            names.is_empty(),
            "expired entries dropped on the next answer"
        );
    }

    #[test]
    fn cname_chains_lead_back_to_the_question_with_the_shortest_ttl() {
        let mut names = DnsNames::new(16, 0);
        names.observe(
            &response(
                "www.shop.example",
                vec![
                    cname("www.shop.example", 300, "shop.cdn.example"),
                    cname("shop.cdn.example", 20, "edge-7.cdn.example"),
                    address("edge-7.cdn.example", 600, "198.51.100.7"),
                    // Not on the chain: an unrelated record a resolver added.
                    address("unrelated.example", 600, "198.51.100.99"),
                ],
            ),
            0,
        );
        assert_eq!(
            names.lookup(ip("198.51.100.7"), 19 * SEC),
            Some("www.shop.example")
        );
        assert_eq!(names.lookup(ip("198.51.100.7"), 20 * SEC), None);
        assert_eq!(names.lookup(ip("198.51.100.99"), 0), None);

        // A CNAME loop ends.
        names.observe(
            &response(
                "a.loop",
                vec![cname("a.loop", 60, "b.loop"), cname("b.loop", 60, "a.loop")],
            ),
            0,
        );
    }

    #[test]
    fn the_floor_keeps_short_lived_answers_a_while() {
        let mut names = DnsNames::new(16, 30);
        names.observe(
            &response(
                "fast.example",
                vec![address("fast.example", 0, "192.0.2.1")],
            ),
            0,
        );
        assert_eq!(
            names.lookup(ip("192.0.2.1"), 29 * SEC),
            Some("fast.example")
        );
        assert_eq!(names.lookup(ip("192.0.2.1"), 30 * SEC), None);
    }

    #[test]
    fn errors_and_queries_teach_nothing() {
        let mut names = DnsNames::new(16, 0);
        let mut failed = response("x.example", vec![address("x.example", 60, "192.0.2.2")]);
        failed.rcode = Rcode::ServFail;
        names.observe(&failed, 0);
        let mut query = response("x.example", vec![address("x.example", 60, "192.0.2.2")]);
        query.flags = 0x0100;
        names.observe(&query, 0);
        let mut no_question = response("x.example", vec![address("x.example", 60, "192.0.2.2")]);
        no_question.question = None;
        names.observe(&no_question, 0);
        assert!(names.is_empty());
    }

    #[test]
    fn when_full_the_entry_closest_to_expiry_goes() {
        let mut names = DnsNames::new(2, 0);
        let learn = |names: &mut DnsNames, name: &str, ttl: u32, addr: &str| {
            names.observe(&response(name, vec![address(name, ttl, addr)]), 0);
        };
        learn(&mut names, "long.example", 300, "192.0.2.1");
        learn(&mut names, "short.example", 10, "192.0.2.2");
        learn(&mut names, "new.example", 100, "192.0.2.3");
        assert_eq!(names.len(), 2);
        assert_eq!(names.lookup(ip("192.0.2.2"), 0), None);
        assert_eq!(names.lookup(ip("192.0.2.1"), 0), Some("long.example"));
        // A newer answer for a known address replaces it without evicting anyone.
        learn(&mut names, "renamed.example", 50, "192.0.2.1");
        assert_eq!(names.len(), 2);
        assert_eq!(
            names.lookup(ip("192.0.2.1"), 49 * SEC),
            Some("renamed.example")
        );
        assert_eq!(names.lookup(ip("192.0.2.1"), 50 * SEC), None);
    }

    #[test]
    fn the_longest_configured_prefix_labels_an_address() {
        let configured: Vec<(Cidr, String)> = vec![
            ("10.0.0.0/8".parse().unwrap(), "corp".into()),
            ("10.20.0.0/16".parse().unwrap(), "office".into()),
            (
                "169.254.169.254/32".parse().unwrap(),
                "cloud-metadata".into(),
            ),
        ];
        let labels = CidrLabels::new(configured.iter().map(|(c, l)| (c, l)));
        assert_eq!(labels.lookup(ip("10.20.3.4")), Some("office"));
        assert_eq!(labels.lookup(ip("10.21.3.4")), Some("corp"));
        assert_eq!(labels.lookup(ip("::ffff:10.1.1.1")), Some("corp"));
        assert_eq!(labels.lookup(ip("169.254.169.254")), Some("cloud-metadata"));
        assert_eq!(labels.lookup(ip("169.254.20.10")), Some(LINK_LOCAL));
        assert_eq!(labels.lookup(ip("fe80::1")), Some(LINK_LOCAL));
        assert_eq!(labels.lookup(ip("8.8.8.8")), None);
    }
}
