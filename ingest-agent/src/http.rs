//! HTTP/1.x heads from captured payload bytes: the request line with `Host` and `traceparent`,
//! and the response status line. The kernel captures only the first bytes of the first segment,
//! so input may end mid-line; whatever is complete is used and the rest ignored. Knows nothing
//! of sockets or the kernel.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
    Patch,
}

impl Method {
    pub const ALL: [Method; 9] = [
        Method::Get,
        Method::Head,
        Method::Post,
        Method::Put,
        Method::Delete,
        Method::Connect,
        Method::Options,
        Method::Trace,
        Method::Patch,
    ];

    fn parse(token: &str) -> Option<Method> {
        Some(match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "CONNECT" => Method::Connect,
            "OPTIONS" => Method::Options,
            "TRACE" => Method::Trace,
            "PATCH" => Method::Patch,
            _ => return None,
        })
    }

    /// A method as the kernel classifies it (`abi::http_method`); `None` for 0 or unknown.
    pub fn from_abi(code: u8) -> Option<Method> {
        use strata_ebpf::abi::http_method;
        Some(match code {
            http_method::GET => Method::Get,
            http_method::HEAD => Method::Head,
            http_method::POST => Method::Post,
            http_method::PUT => Method::Put,
            http_method::DELETE => Method::Delete,
            http_method::CONNECT => Method::Connect,
            http_method::OPTIONS => Method::Options,
            http_method::TRACE => Method::Trace,
            http_method::PATCH => Method::Patch,
            _ => return None,
        })
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Connect => "CONNECT",
            Method::Options => "OPTIONS",
            Method::Trace => "TRACE",
            Method::Patch => "PATCH",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `HTTP/1.<minor>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version {
    pub minor: u8,
}

impl Version {
    fn parse(token: &str) -> Option<Version> {
        let minor = token.strip_prefix("HTTP/1.")?;
        match minor.as_bytes() {
            [digit @ b'0'..=b'9'] => Some(Version {
                minor: digit - b'0',
            }),
            _ => None,
        }
    }
}

/// W3C Trace Context `traceparent` (<https://www.w3.org/TR/trace-context/#traceparent-header>).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub version: u8,
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub flags: u8,
}

impl TraceParent {
    /// `version-traceid-parentid-flags` in lowercase hex. Version `ff` and all-zero ids are
    /// invalid; version 00 must be exactly 55 characters, later versions may append fields.
    pub fn parse(value: &str) -> Option<TraceParent> {
        let value = value.trim();
        let bytes = value.as_bytes();
        if bytes.len() < 55 || bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let version = hex_byte(&bytes[0..2])?;
        if version == 0xff || (version == 0 && bytes.len() != 55) {
            return None;
        }
        if version != 0 && bytes.len() > 55 && bytes[55] != b'-' {
            return None;
        }
        let mut trace_id = [0u8; 16];
        for (i, byte) in trace_id.iter_mut().enumerate() {
            *byte = hex_byte(&bytes[3 + 2 * i..5 + 2 * i])?;
        }
        let mut parent_id = [0u8; 8];
        for (i, byte) in parent_id.iter_mut().enumerate() {
            *byte = hex_byte(&bytes[36 + 2 * i..38 + 2 * i])?;
        }
        let flags = hex_byte(&bytes[53..55])?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            version,
            trace_id,
            parent_id,
            flags,
        })
    }

    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some(digit(pair[0])? << 4 | digit(pair[1])?)
}

/// Text from a request head (its target, its `Host`), held inside the value up to
/// [`HeadText::INLINE`] bytes and on the heap only beyond: most targets and hosts are short, and
/// a decoded exchange then carries them without an allocation of its own.
#[derive(Clone)]
pub struct HeadText(Repr);

#[derive(Clone)]
enum Repr {
    /// Invariant: `bytes[..len]` is a whole `str` (copied from one).
    Inline {
        len: u8,
        bytes: [u8; HeadText::INLINE],
    },
    Heap(Box<str>),
}

impl HeadText {
    /// Longest text kept inline: with its length and tag the value fills one 64-byte cache line.
    pub const INLINE: usize = 62;

    pub fn new(text: &str) -> HeadText {
        match u8::try_from(text.len()) {
            Ok(len) if text.len() <= Self::INLINE => {
                let mut bytes = [0; Self::INLINE];
                bytes[..text.len()].copy_from_slice(text.as_bytes());
                HeadText(Repr::Inline { len, bytes })
            }
            _ => HeadText(Repr::Heap(text.into())),
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Checked again rather than trusted: read only where a span or a path needs the
            // text, which is rare next to the events that carry it. `new` copied a whole `str`,
            // so the check never fails.
            Repr::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Repr::Heap(text) => text,
        }
    }
}

impl std::ops::Deref for HeadText {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for HeadText {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for HeadText {}

impl PartialEq<&str> for HeadText {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for HeadText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    /// The request target as sent: origin-form path with query, or absolute-form.
    pub target: HeadText,
    pub version: Version,
    pub host: Option<HeadText>,
    pub traceparent: Option<TraceParent>,
    /// The blank line ending the headers was captured: no header was cut off.
    pub headers_complete: bool,
}

impl RequestHead {
    /// The target without its query string.
    pub fn path(&self) -> &str {
        self.target.split(['?', '#']).next().unwrap_or("")
    }
}

/// Parses a request head from the first bytes of a request. `None` when the request line is not
/// complete HTTP/1.x.
pub fn parse_request_head(bytes: &[u8]) -> Option<RequestHead> {
    let mut lines = complete_lines(bytes);
    let request_line = lines.next()?;
    let (method, rest) = split_once_ascii(request_line, b' ')?;
    let method = Method::parse(method)?;
    let (target, version) = split_once_ascii(rest, b' ')?;
    if target.is_empty() || version.as_bytes().contains(&b' ') {
        return None;
    }
    let version = Version::parse(version)?;
    let mut head = RequestHead {
        method,
        target: HeadText::new(target),
        version,
        host: None,
        traceparent: None,
        headers_complete: false,
    };
    for line in lines {
        if line.is_empty() {
            head.headers_complete = true;
            break;
        }
        let Some((name, value)) = split_once_ascii(line, b':') else {
            continue;
        };
        let value = trim_blanks(value);
        if name.eq_ignore_ascii_case("host") {
            head.host = Some(HeadText::new(value));
        } else if name.eq_ignore_ascii_case("traceparent") {
            head.traceparent = TraceParent::parse(value);
        }
    }
    Some(head)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusLine {
    pub version: Version,
    pub code: u16,
}

impl StatusLine {
    pub fn is_server_error(&self) -> bool {
        (500..600).contains(&self.code)
    }
}

/// Parses `HTTP/1.x NNN` from the first bytes of a response. The reason phrase after the code is not
/// kept (nothing reports it): it may be cut off by the capture, anywhere, even inside a character.
pub fn parse_status_line(bytes: &[u8]) -> Option<StatusLine> {
    let line_end = bytes
        .windows(2)
        .position(|pair| pair == b"\r\n")
        .unwrap_or(bytes.len());
    let line = &bytes[..line_end];
    let space = line.iter().position(|&b| b == b' ')?;
    let version = Version::parse(std::str::from_utf8(&line[..space]).ok()?)?;
    let code = line[space + 1..].split(|&b| b == b' ').next()?;
    if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = code
        .iter()
        .fold(0u16, |n, &digit| n * 10 + u16::from(digit - b'0'));
    if !(100..600).contains(&code) {
        return None;
    }
    Some(StatusLine { version, code })
}

/// CRLF-terminated lines that are valid UTF-8; stops at the first line cut off by the capture,
/// or at the first that is not UTF-8.
///
/// The capture is validated once, not line by line: lines end at an ASCII byte, so a line is
/// valid UTF-8 exactly when it ends before the capture's first invalid byte.
fn complete_lines(bytes: &[u8]) -> impl Iterator<Item = &str> {
    let mut rest = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => std::str::from_utf8(&bytes[..err.valid_up_to()]).unwrap_or_default(),
    };
    std::iter::from_fn(move || {
        let end = crlf(rest)?;
        let line = &rest[..end];
        rest = &rest[end + 2..];
        Some(line)
    })
}

/// Where the first `\r\n` of `text` starts.
fn crlf(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut from = 0;
    loop {
        let cr = from + position_of(&bytes[from..], b'\r')?;
        if bytes.get(cr + 1) == Some(&b'\n') {
            return Some(cr);
        }
        from = cr + 1;
    }
}

/// `text` before and after its first `byte`, an ASCII one, so both sides are whole `str`s.
fn split_once_ascii(text: &str, byte: u8) -> Option<(&str, &str)> {
    debug_assert!(byte.is_ascii());
    let at = position_of(text.as_bytes(), byte)?;
    Some((&text[..at], &text[at + 1..]))
}

/// A plain byte search: a head's lines and fields are a few dozen bytes, where `str`'s `char`
/// patterns spend more on their general UTF-8 matching (a `memcmp` per candidate) than on the
/// search.
fn position_of(bytes: &[u8], byte: u8) -> Option<usize> {
    bytes.iter().position(|&b| b == byte)
}

/// `text` without leading and trailing spaces and tabs (RFC 9110 §5.6.3, optional whitespace).
fn trim_blanks(text: &str) -> &str {
    let blank = |b: &u8| matches!(b, b' ' | b'\t');
    let bytes = text.as_bytes();
    let start = bytes.iter().position(|b| !blank(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !blank(b))
        .map_or(start, |last| last + 1);
    &text[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_a_captured_request_with_host_and_traceparent() {
        let payload = format!(
            "GET /api/v1/orders?id=7 HTTP/1.1\r\nHost: shop.example:8080\r\n\
             User-Agent: curl/8\r\nTraceParent:  {TRACEPARENT}\r\n\r\n"
        );
        let head = parse_request_head(payload.as_bytes()).expect("a request");
        assert_eq!(head.method, Method::Get);
        assert_eq!(head.target, "/api/v1/orders?id=7");
        assert_eq!(head.path(), "/api/v1/orders");
        assert_eq!(head.version, Version { minor: 1 });
        assert_eq!(head.host.as_deref(), Some("shop.example:8080"));
        let parent = head.traceparent.expect("traceparent");
        assert_eq!(parent.trace_id[0], 0x4b);
        assert_eq!(parent.trace_id[15], 0x36);
        assert_eq!(
            parent.parent_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert!(parent.sampled());
        assert!(head.headers_complete);
    }

    #[test]
    fn a_request_cut_off_by_the_capture_keeps_its_complete_lines() {
        let payload = b"POST /upload HTTP/1.0\r\nHost: a\r\nContent-Type: multip";
        let head = parse_request_head(payload).expect("request line complete");
        assert_eq!(head.method, Method::Post);
        assert_eq!(head.host.as_deref(), Some("a"));
        assert!(!head.headers_complete);
        assert!(parse_request_head(b"GET /very/long/path/cut").is_none());
    }

    #[test]
    fn rejects_what_is_not_an_http1_request_line() {
        for payload in [
            &b"BREW /pot HTTP/1.1\r\n"[..],
            b"GET /  HTTP/1.1\r\n",
            b"GET / HTTP/2.0\r\n",
            b"GET / HTTP/1.1 extra\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n",
        ] {
            assert!(parse_request_head(payload).is_none(), "{payload:?}");
        }
    }

    #[test]
    fn parses_status_lines_even_when_cut() {
        let status = parse_status_line(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0")
            .expect("status");
        assert_eq!(status.code, 500);
        assert!(status.is_server_error());
        let cut_in_a_character =
            parse_status_line(b"HTTP/1.1 404 Nicht gefunden, \xc3").expect("status");
        assert_eq!(cut_in_a_character.code, 404);
        let cut = parse_status_line(b"HTTP/1.0 204 No Cont").expect("cut reason is fine");
        assert_eq!((cut.version.minor, cut.code), (0, 204));
        assert_eq!(
            parse_status_line(b"HTTP/1.1 200").map(|s| s.code),
            Some(200)
        );
        assert!(parse_status_line(b"HTTP/1.1 20").is_none());
        assert!(parse_status_line(b"HTTP/1.1 999 Nope\r\n").is_none());
        assert!(parse_status_line(b"SSH-2.0-OpenSSH\r\n").is_none());
    }

    #[test]
    fn traceparent_follows_the_w3c_rules() {
        assert!(TraceParent::parse(TRACEPARENT).is_some());
        let unsampled = TRACEPARENT.replace("-01", "-00");
        assert!(!TraceParent::parse(&unsampled).expect("valid").sampled());
        // all-zero ids, version ff, uppercase hex, wrong length for version 00
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert!(TraceParent::parse(bad).is_none(), "{bad}");
        }
        // a future version may append fields
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what";
        assert_eq!(TraceParent::parse(future).map(|p| p.version), Some(1));
    }

    #[test]
    fn every_method_is_listed_once_and_parses_back() {
        for (i, method) in Method::ALL.into_iter().enumerate() {
            assert_eq!(Method::parse(method.as_str()), Some(method));
            assert!(!Method::ALL[..i].contains(&method), "{method} twice");
        }
    }

    #[test]
    fn head_text_keeps_short_and_long_text_alike() {
        let short = "a".repeat(HeadText::INLINE);
        let long = format!("/{}", "é".repeat(HeadText::INLINE));
        for text in ["", "/", short.as_str(), long.as_str()] {
            let kept = HeadText::new(text);
            assert_eq!(kept.as_str(), text);
            assert_eq!(kept, HeadText::new(text));
            assert_eq!(format!("{kept:?}"), format!("{text:?}"));
        }
        assert!(matches!(HeadText::new(&short).0, Repr::Inline { .. }));
        assert!(matches!(HeadText::new(&long).0, Repr::Heap(_)));
    }

    #[test]
    fn a_long_target_and_host_are_kept_whole() {
        let target = format!("/search?q={}", "x".repeat(300));
        let host = format!("{}.shop.svc.cluster.local:8080", "orders".repeat(10));
        let payload = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let head = parse_request_head(payload.as_bytes()).expect("a request");
        assert_eq!(head.target.as_str(), target);
        assert_eq!(head.path(), "/search");
        assert_eq!(head.host.as_deref(), Some(host.as_str()));
    }

    #[test]
    fn a_header_line_that_is_not_utf8_ends_the_head() {
        let payload = [
            &b"GET / HTTP/1.1\r\nHost: a\r\nX-Bin: \xff\r\ntraceparent: "[..],
            TRACEPARENT.as_bytes(),
            b"\r\n\r\n",
        ]
        .concat();
        let head = parse_request_head(&payload).expect("request line complete");
        assert_eq!(head.host.as_deref(), Some("a"), "lines before it count");
        assert_eq!(head.traceparent, None, "lines after it do not");
        assert!(!head.headers_complete);
        // A bare LF is part of its line; the body after the blank line is not looked at.
        let head = parse_request_head(b"GET /a\nb HTTP/1.1\r\n\r\n\xff\xfe").expect("request");
        assert_eq!(head.target, "/a\nb");
        assert!(head.headers_complete);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Line by line, as the parser did before it validated the capture once.
        fn complete_lines_one_by_one(bytes: &[u8]) -> Vec<&str> {
            let mut rest = bytes;
            std::iter::from_fn(move || {
                let end = rest.windows(2).position(|pair| pair == b"\r\n")?;
                let line = std::str::from_utf8(&rest[..end]).ok()?;
                rest = &rest[end + 2..];
                Some(line)
            })
            .collect()
        }

        /// The head as the parser read it before it searched bytes: `str` splits and trims.
        fn parse_request_head_with_str_patterns(bytes: &[u8]) -> Option<RequestHead> {
            let mut lines = complete_lines_one_by_one(bytes).into_iter();
            let mut parts = lines.next()?.split(' ');
            let method = Method::parse(parts.next()?)?;
            let target = parts.next().filter(|target| !target.is_empty())?;
            let version = Version::parse(parts.next()?)?;
            if parts.next().is_some() {
                return None;
            }
            let mut head = RequestHead {
                method,
                target: HeadText::new(target),
                version,
                host: None,
                traceparent: None,
                headers_complete: false,
            };
            for line in lines {
                if line.is_empty() {
                    head.headers_complete = true;
                    break;
                }
                let Some((name, value)) = line.split_once(':') else {
                    continue;
                };
                let value = value.trim_matches([' ', '\t']);
                if name.eq_ignore_ascii_case("host") {
                    head.host = Some(HeadText::new(value));
                } else if name.eq_ignore_ascii_case("traceparent") {
                    head.traceparent = TraceParent::parse(value);
                }
            }
            Some(head)
        }

        proptest! {
            /// Heads drawn from the pieces that matter to the splits: spaces, tabs, colons, line
            /// ends, the header names looked for, and a character that is not ASCII.
            #[test]
            fn heads_parse_as_with_str_patterns(
                request_line in prop_oneof![
                    prop::sample::select(vec![
                        "GET / HTTP/1.1", "GET  / HTTP/1.1", "GET /a b HTTP/1.1", "GET / HTTP/1.1 ",
                        "PUT /x\tz:1 HTTP/1.0", "GET /é HTTP/1.1", "GET \t HTTP/1.1", "GET /",
                    ])
                    .prop_map(String::from),
                    proptest::collection::vec(
                        prop::sample::select(vec!["GET", "BREW", " ", "/", "é", "HTTP/1.1", "\t"]),
                        0..8,
                    )
                    .prop_map(|pieces| pieces.concat()),
                ],
                headers in proptest::collection::vec(
                    prop::sample::select(vec![
                        " ", "\t", ":", "\r\n", "\r", "\n", "x", "é", "\r\nHost:", "\r\nhOST :",
                        "\r\ntraceparent:", "\r\n\r\n",
                        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                    ]),
                    0..40,
                ),
            ) {
                let head = format!("{request_line}{}", headers.concat());
                prop_assert_eq!(
                    parse_request_head(head.as_bytes()),
                    parse_request_head_with_str_patterns(head.as_bytes())
                );
            }

            /// Bytes drawn mostly from line ends, multi-byte characters and their pieces.
            #[test]
            fn lines_are_those_of_a_line_by_line_check(
                pieces in proptest::collection::vec(
                    prop::sample::select(vec![
                        &b"\r\n"[..], b"\r", b"\n", b"a", b" ", b"\xc3\xa9", b"\xc3", b"\xa9",
                        b"\xe2\x82\xac", b"\xff", b"\xf0\x9f\x98\x80",
                    ]),
                    0..60,
                ),
            ) {
                let bytes = pieces.concat();
                prop_assert_eq!(
                    complete_lines(&bytes).collect::<Vec<_>>(),
                    complete_lines_one_by_one(&bytes)
                );
            }

            #[test]
            fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
                let _ = parse_request_head(&bytes);
                let _ = parse_status_line(&bytes);
            }

            #[test]
            fn a_request_head_parses_back(
                method in prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]),
                path in "/[a-zA-Z0-9/_.-]{0,60}(\\?[a-z=&0-9]{0,20})?",
                host in "[a-z0-9.-]{1,40}(:[0-9]{1,5})?",
                trace_id in any::<[u8; 16]>().prop_filter("non-zero", |id| *id != [0; 16]),
                parent_id in any::<[u8; 8]>().prop_filter("non-zero", |id| *id != [0; 8]),
                cut in 0usize..200,
            ) {
                let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
                let head = format!(
                    "{method} {path} HTTP/1.1\r\nHost: {host}\r\ntraceparent: 00-{}-{}-01\r\n\r\n",
                    hex(&trace_id), hex(&parent_id)
                );
                let parsed = parse_request_head(head.as_bytes()).unwrap();
                prop_assert_eq!(parsed.method.as_str(), method);
                prop_assert_eq!(parsed.target.as_str(), path.as_str());
                prop_assert_eq!(parsed.host.as_deref(), Some(host.as_str()));
                let parent = parsed.traceparent.unwrap();
                prop_assert_eq!(parent.trace_id, trace_id);
                prop_assert_eq!(parent.parent_id, parent_id);
                prop_assert!(parsed.headers_complete);
                // Cut anywhere after the request line: still the same method and target.
                let line_end = head.find("\r\n").unwrap() + 2;
                let cut_at = (line_end + cut).min(head.len());
                let partial = parse_request_head(&head.as_bytes()[..cut_at]).unwrap();
                prop_assert_eq!(partial.target.as_str(), path.as_str());
            }
        }
    }
}
