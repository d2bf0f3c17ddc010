//! DNS messages in wire format (RFC 1035 §4): header, the question, and the A/AAAA/CNAME answers
//! with their TTLs, following name compression. Input is a captured prefix of the message, so a
//! record cut off at the end stops parsing without failing what came before. Knows nothing of
//! sockets or the kernel.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub mod record_type {
    pub const A: u16 = 1;
    pub const CNAME: u16 = 5;
    pub const AAAA: u16 = 28;
}

/// RFC 1035 §4.1.1 and RFC 6895 response codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rcode {
    NoError,
    FormErr,
    ServFail,
    NxDomain,
    NotImp,
    Refused,
    Other(u8),
}

impl Rcode {
    fn from_flags(flags: u16) -> Rcode {
        match flags & 0x000f {
            0 => Rcode::NoError,
            1 => Rcode::FormErr,
            2 => Rcode::ServFail,
            3 => Rcode::NxDomain,
            4 => Rcode::NotImp,
            5 => Rcode::Refused,
            other => Rcode::Other(other as u8),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Rcode::NoError => "NOERROR",
            Rcode::FormErr => "FORMERR",
            Rcode::ServFail => "SERVFAIL",
            Rcode::NxDomain => "NXDOMAIN",
            Rcode::NotImp => "NOTIMP",
            Rcode::Refused => "REFUSED",
            Rcode::Other(_) => "OTHER",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    /// Lowercase, dot-separated, without the trailing dot.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnswerData {
    Address(IpAddr),
    Cname(String),
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub name: String,
    pub rtype: u16,
    pub ttl: u32,
    pub data: AnswerData,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub id: u16,
    pub flags: u16,
    pub rcode: Rcode,
    pub question: Option<Question>,
    pub answers: Vec<Answer>,
    /// The capture ended before every announced answer was read.
    pub truncated: bool,
}

impl Message {
    pub fn is_response(&self) -> bool {
        self.flags & 0x8000 != 0
    }

    /// Addresses in the answer section, in order.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.answers.iter().filter_map(|answer| match answer.data {
            AnswerData::Address(addr) => Some(addr),
            _ => None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("shorter than a DNS header")]
    ShortHeader,
    #[error("question section malformed or cut off")]
    BadQuestion,
}

/// RFC 1035 §2.3.4: names are at most 255 octets; compression may not loop.
const MAX_NAME_LEN: usize = 255;
const MAX_POINTER_HOPS: usize = 32;

pub fn parse(bytes: &[u8]) -> Result<Message, DnsError> {
    if bytes.len() < 12 {
        return Err(DnsError::ShortHeader);
    }
    let word = |at: usize| u16::from_be_bytes([bytes[at], bytes[at + 1]]);
    let flags = word(2);
    let (qdcount, ancount) = (word(4), word(6));
    let mut message = Message {
        id: word(0),
        flags,
        rcode: Rcode::from_flags(flags),
        question: None,
        answers: Vec::new(),
        truncated: false,
    };
    let mut at = 12;
    for index in 0..qdcount {
        let (name, next) = read_name(bytes, at).ok_or(DnsError::BadQuestion)?;
        let fixed = bytes.get(next..next + 4).ok_or(DnsError::BadQuestion)?;
        if index == 0 {
            message.question = Some(Question {
                name,
                qtype: u16::from_be_bytes([fixed[0], fixed[1]]),
                qclass: u16::from_be_bytes([fixed[2], fixed[3]]),
            });
        }
        at = next + 4;
    }
    for _ in 0..ancount {
        match read_answer(bytes, at) {
            Some((answer, next)) => {
                message.answers.push(answer);
                at = next;
            }
            None => {
                message.truncated = true;
                break;
            }
        }
    }
    Ok(message)
}

fn read_answer(bytes: &[u8], at: usize) -> Option<(Answer, usize)> {
    let (name, next) = read_name(bytes, at)?;
    let fixed = bytes.get(next..next + 10)?;
    let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
    let ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
    let rdlength = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
    let rdata_at = next + 10;
    let rdata = bytes.get(rdata_at..rdata_at + rdlength)?;
    let data = match (rtype, rdlength) {
        (record_type::A, 4) => AnswerData::Address(IpAddr::V4(Ipv4Addr::new(
            rdata[0], rdata[1], rdata[2], rdata[3],
        ))),
        (record_type::AAAA, 16) => {
            let octets: [u8; 16] = rdata.try_into().ok()?;
            AnswerData::Address(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        (record_type::CNAME, _) => AnswerData::Cname(read_name(bytes, rdata_at)?.0),
        _ => AnswerData::Other,
    };
    Some((
        Answer {
            name,
            rtype,
            ttl,
            data,
        },
        rdata_at + rdlength,
    ))
}

/// Reads a possibly compressed name at `at`; returns it and the offset just past it in the
/// record (a pointer ends the in-place part).
fn read_name(bytes: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    let mut end_in_place = None;
    let mut hops = 0;
    loop {
        let len = *bytes.get(at)?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                let end = end_in_place.unwrap_or(at + 1);
                return Some((name, end));
            }
            0x00 => {
                let label = bytes.get(at + 1..at + 1 + usize::from(len))?;
                if !name.is_empty() {
                    name.push('.');
                }
                for &byte in label {
                    name.push(char::from(byte.to_ascii_lowercase()));
                }
                if name.len() > MAX_NAME_LEN {
                    return None;
                }
                at += 1 + usize::from(len);
            }
            0xc0 => {
                let low = *bytes.get(at + 1)?;
                hops += 1;
                if hops > MAX_POINTER_HOPS {
                    return None;
                }
                end_in_place.get_or_insert(at + 2);
                at = usize::from(u16::from_be_bytes([len & 0x3f, low]));
            }
            _ => return None, // 0x40 and 0x80 are reserved label types
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a DNS message the way a server would, for tests here and in `events`.
    pub(crate) fn response(
        id: u16,
        rcode: u8,
        qname: &str,
        qtype: u16,
        answers: &[IpAddr],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&(0x8180u16 | u16::from(rcode)).to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        for label in qname.split('.') {
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
        out.extend_from_slice(&qtype.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        for addr in answers {
            out.extend_from_slice(&[0xc0, 12]); // pointer to the question name
            let (rtype, rdata) = match addr {
                IpAddr::V4(v4) => (record_type::A, v4.octets().to_vec()),
                IpAddr::V6(v6) => (record_type::AAAA, v6.octets().to_vec()),
            };
            out.extend_from_slice(&rtype.to_be_bytes());
            out.extend_from_slice(&1u16.to_be_bytes());
            out.extend_from_slice(&300u32.to_be_bytes());
            out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            out.extend_from_slice(&rdata);
        }
        out
    }

    #[test]
    fn parses_a_response_with_compressed_answers() {
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        let bytes = response(0xbeef, 0, "Api.Example.COM", record_type::A, &[v4, v6]);
        let message = parse(&bytes).expect("valid");
        assert_eq!(message.id, 0xbeef);
        assert!(message.is_response());
        assert_eq!(message.rcode, Rcode::NoError);
        let question = message.question.as_ref().expect("question");
        assert_eq!(question.name, "api.example.com");
        assert_eq!(question.qtype, record_type::A);
        assert_eq!(message.addresses().collect::<Vec<_>>(), vec![v4, v6]);
        assert_eq!(message.answers[0].name, "api.example.com");
        assert_eq!(message.answers[0].ttl, 300);
        assert!(!message.truncated);
    }

    #[test]
    fn nxdomain_has_a_question_and_no_answers() {
        let bytes = response(7, 3, "missing.example", record_type::AAAA, &[]);
        let message = parse(&bytes).expect("valid");
        assert_eq!(message.rcode, Rcode::NxDomain);
        assert_eq!(message.rcode.as_str(), "NXDOMAIN");
        assert_eq!(message.question.map(|q| q.qtype), Some(record_type::AAAA));
        assert!(message.answers.is_empty());
    }

    #[test]
    fn a_capture_cut_inside_the_answers_keeps_the_complete_ones() {
        let addrs: Vec<IpAddr> = vec!["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()];
        let bytes = response(1, 0, "a.b", record_type::A, &addrs);
        let message = parse(&bytes[..bytes.len() - 2]).expect("header and question intact");
        assert_eq!(message.addresses().count(), 1);
        assert!(message.truncated);
    }

    #[test]
    fn cname_chains_are_followed_and_loops_rejected() {
        let mut bytes = response(2, 0, "www.a.b", record_type::A, &[]);
        bytes[7] = 1; // one answer: a CNAME whose target is compressed into the question name
        bytes.extend_from_slice(&[0xc0, 12]);
        bytes.extend_from_slice(&record_type::CNAME.to_be_bytes());
        bytes.extend_from_slice(&1u16.to_be_bytes());
        bytes.extend_from_slice(&60u32.to_be_bytes());
        bytes.extend_from_slice(&2u16.to_be_bytes());
        bytes.extend_from_slice(&[0xc0, 16]); // "a.b" inside "www.a.b"
        let message = parse(&bytes).expect("valid");
        assert_eq!(message.answers[0].data, AnswerData::Cname("a.b".into()));

        let looping = [
            0u8, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1,
        ];
        assert_eq!(parse(&looping), Err(DnsError::BadQuestion));
        assert_eq!(parse(&[0; 11]), Err(DnsError::ShortHeader));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn label() -> impl Strategy<Value = String> {
            "[a-z0-9][a-z0-9-]{0,20}"
        }

        proptest! {
            #[test]
            fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
                let _ = parse(&bytes);
            }

            #[test]
            fn what_a_server_writes_parses_back(
                id in any::<u16>(),
                labels in proptest::collection::vec(label(), 1..5),
                v4 in proptest::collection::vec(any::<[u8; 4]>(), 0..8),
                v6 in proptest::collection::vec(any::<[u8; 16]>(), 0..4),
            ) {
                let name = labels.join(".");
                let addresses: Vec<IpAddr> = v4.into_iter().map(IpAddr::from)
                    .chain(v6.into_iter().map(IpAddr::from))
                    .collect();
                let message = parse(&response(id, 0, &name, record_type::A, &addresses)).unwrap();
                prop_assert_eq!(message.id, id);
                prop_assert_eq!(message.question.as_ref().map(|q| q.name.clone()), Some(name));
                prop_assert_eq!(message.addresses().collect::<Vec<_>>(), addresses);
                prop_assert!(!message.truncated);
            }
        }
    }
}
