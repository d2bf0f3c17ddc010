//! Parsing of the two text exposition formats into store model types: the Prometheus text format 0.0.4
//! (`text/plain; version=0.0.4`) and OpenMetrics 1.0 text (`application/openmetrics-text`), as scraped or
//! as `promtool tsdb create-blocks-from openmetrics` backfills it. Knows nothing of where the text comes
//! from or where the entries go.
//!
//! The parser works a line at a time on borrowed `&str`s, so a caller can stream a multi-gigabyte backfill
//! file through a reused line buffer ([`Parser::parse_line`]) or iterate over text in memory
//! ([`entries`]). Strings are only allocated for what the output owns (label names and values); escape
//! handling copies only values that contain a backslash.
//!
//! Differences between the dialects that matter here (OpenMetrics 1.0 spec, "Text format"):
//! timestamps are integer milliseconds in the Prometheus format and float seconds in OpenMetrics;
//! OpenMetrics adds `# UNIT`, exemplars after ` # `, more metric types, and a mandatory final `# EOF`.

use std::collections::VecDeque;

use strata_store::{Exemplar, Label, Labels, Metadata, MetricType, METRIC_NAME};

/// Which text format the input is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Prometheus text format 0.0.4: timestamps in integer milliseconds, no `# EOF`.
    PrometheusText,
    /// OpenMetrics 1.0 text: timestamps in float seconds, exemplars, `# UNIT`, ends with `# EOF`.
    OpenMetrics,
}

impl Dialect {
    /// From an HTTP `Content-Type`; `None` for a type that is neither format.
    pub fn from_content_type(content_type: &str) -> Option<Dialect> {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        if media.eq_ignore_ascii_case("application/openmetrics-text") {
            Some(Dialect::OpenMetrics)
        } else if media.eq_ignore_ascii_case("text/plain") {
            Some(Dialect::PrometheusText)
        } else {
            None
        }
    }

    /// Guesses from the text itself: OpenMetrics input must end with `# EOF`, Prometheus text never does.
    pub fn detect(input: &str) -> Dialect {
        let last = input
            .trim_end_matches(['\n', '\r'])
            .rsplit('\n')
            .next()
            .unwrap_or_default();
        if last.trim_end_matches('\r') == "# EOF" {
            Dialect::OpenMetrics
        } else {
            Dialect::PrometheusText
        }
    }
}

/// One parsed item.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// A sample. `t_ms` is `None` when the line has no timestamp (the scraper or importer supplies one).
    /// An exemplar without its own timestamp takes the sample's, or 0 when the sample has none either.
    Sample {
        labels: Labels,
        t_ms: Option<i64>,
        v: f64,
        exemplar: Option<Exemplar>,
    },
    /// Everything the `# HELP`, `# TYPE` and `# UNIT` lines said about one family, emitted once those
    /// lines end (before the family's first sample).
    Metadata { family: String, metadata: Metadata },
}

/// A syntax error, with the 1-based line it was found on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl ParseError {
    /// The HTTP status for an upload that does not parse.
    pub fn status(&self) -> u16 {
        400
    }
}

/// OpenMetrics 1.0 "Exemplars": the combined length of an exemplar's label names and values, in
/// UTF-8 characters, MUST NOT exceed 128.
const MAX_EXEMPLAR_LABEL_CHARS: usize = 128;

/// Line-at-a-time parser state: the dialect, the line number, metadata being gathered, and whether
/// `# EOF` has been seen.
#[derive(Debug)]
pub struct Parser {
    dialect: Dialect,
    line: usize,
    pending: Option<(String, Metadata)>,
    seen_eof: bool,
}

impl Parser {
    pub fn new(dialect: Dialect) -> Self {
        Parser {
            dialect,
            line: 0,
            pending: None,
            seen_eof: false,
        }
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Parses the next line (without its `\n`; a trailing `\r` is ignored) and appends what it yields to
    /// `out`: nothing for comments and blank lines, a `Metadata` entry when a family's metadata lines
    /// end, a `Sample` for a sample line.
    pub fn parse_line(&mut self, line: &str, out: &mut Vec<Entry>) -> Result<(), ParseError> {
        self.line += 1;
        // Leading blanks are tolerated, as the Go text parsers tolerate them.
        let line = line
            .strip_suffix('\r')
            .unwrap_or(line)
            .trim_start_matches([' ', '\t']);
        if self.seen_eof {
            if line.is_empty() {
                return Ok(());
            }
            return Err(self.error("unexpected data after # EOF"));
        }
        if line.trim().is_empty() {
            return Ok(());
        }
        if let Some(comment) = line.strip_prefix('#') {
            return self.parse_comment(comment, out).map_err(|m| self.error(m));
        }
        self.flush(out);
        let entry = parse_sample(line, self.dialect).map_err(|m| self.error(m))?;
        out.push(entry);
        Ok(())
    }

    /// Ends the input: emits metadata still pending, and checks that OpenMetrics input ended with `# EOF`.
    pub fn finish(&mut self, out: &mut Vec<Entry>) -> Result<(), ParseError> {
        self.flush(out);
        if self.dialect == Dialect::OpenMetrics && !self.seen_eof {
            return Err(self.error("OpenMetrics input does not end with # EOF"));
        }
        Ok(())
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line,
            message: message.into(),
        }
    }

    fn flush(&mut self, out: &mut Vec<Entry>) {
        if let Some((family, metadata)) = self.pending.take() {
            out.push(Entry::Metadata { family, metadata });
        }
    }

    /// `comment` is the line after its `#`.
    fn parse_comment(&mut self, comment: &str, out: &mut Vec<Entry>) -> Result<(), String> {
        if comment == " EOF" && self.dialect == Dialect::OpenMetrics {
            self.flush(out);
            self.seen_eof = true;
            return Ok(());
        }
        let Some(rest) = comment.strip_prefix(' ') else {
            return Ok(()); // `#comment`: not a descriptor in either format.
        };
        let (keyword, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        if !matches!(keyword, "HELP" | "TYPE" | "UNIT") {
            return Ok(()); // Other comments carry nothing.
        }
        let (family, text) = rest.split_once(' ').unwrap_or((rest, ""));
        if !is_metric_name(family) {
            return Err(format!("invalid metric name {family:?} in # {keyword}"));
        }
        if self.pending.as_ref().is_some_and(|(f, _)| f != family) {
            self.flush(out);
        }
        let (_, metadata) = self
            .pending
            .get_or_insert_with(|| (family.to_string(), Metadata::default()));
        match keyword {
            "HELP" => {
                metadata.help = unescape(text, self.dialect == Dialect::OpenMetrics).into_owned()
            }
            "TYPE" => metadata.metric_type = parse_type(text.trim(), self.dialect)?,
            _ => metadata.unit = text.trim().to_string(),
        }
        Ok(())
    }
}

fn parse_type(word: &str, dialect: Dialect) -> Result<MetricType, String> {
    let t = match (word, dialect) {
        ("untyped", Dialect::PrometheusText) | ("unknown", Dialect::OpenMetrics) => {
            MetricType::Unknown
        }
        ("counter" | "gauge" | "histogram" | "summary", _) => MetricType::parse(word),
        ("gaugehistogram" | "stateset" | "info", Dialect::OpenMetrics) => MetricType::parse(word),
        _ => return Err(format!("invalid metric type {word:?}")),
    };
    Ok(t)
}

/// Parses `name[{labels}] value [timestamp] [# {labels} value [timestamp]]`.
fn parse_sample(line: &str, dialect: Dialect) -> Result<Entry, String> {
    let b = line.as_bytes();
    let name_end = b
        .iter()
        .position(|c| !is_metric_name_byte(*c))
        .unwrap_or(b.len());
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!(
            "invalid metric name at the start of {:?}",
            excerpt(line)
        ));
    }
    let mut labels = Vec::with_capacity(8);
    labels.push(Label {
        name: METRIC_NAME.to_string(),
        value: name.to_string(),
    });
    let mut i = name_end;
    if b.get(i) == Some(&b'{') {
        i = parse_labels(line, i, &mut labels)?;
    }
    let labels = into_labels(labels)?;

    let (value, rest) = next_token(line, i).ok_or_else(|| format!("missing value for {name}"))?;
    let v = parse_value(value)?;
    let mut t_ms = None;
    let mut exemplar_part = None;
    if let Some((token, after)) = next_token(line, rest) {
        if token == "#" && dialect == Dialect::PrometheusText {
            return Err("exemplars are only valid in OpenMetrics text".to_string());
        }
        if token == "#" {
            exemplar_part = Some(after);
        } else {
            t_ms = Some(parse_timestamp(token, dialect)?);
            if let Some((token, after)) = next_token(line, after) {
                if token == "#" && dialect == Dialect::OpenMetrics {
                    exemplar_part = Some(after);
                } else {
                    return Err(format!(
                        "unexpected {:?} after the timestamp",
                        excerpt(token)
                    ));
                }
            }
        }
    }
    let exemplar = match exemplar_part {
        Some(at) => Some(parse_exemplar(line, at, t_ms)?),
        None => None,
    };
    Ok(Entry::Sample {
        labels,
        t_ms,
        v,
        exemplar,
    })
}

/// Parses ` {labels} value [timestamp]` of an OpenMetrics exemplar, starting at byte `i`.
fn parse_exemplar(line: &str, i: usize, sample_t: Option<i64>) -> Result<Exemplar, String> {
    let i = skip_blanks(line.as_bytes(), i);
    if line.as_bytes().get(i) != Some(&b'{') {
        return Err("exemplar must start with a label set".to_string());
    }
    let mut pairs = Vec::new();
    let i = parse_labels(line, i, &mut pairs)?;
    let chars: usize = pairs
        .iter()
        .map(|l| l.name.chars().count() + l.value.chars().count())
        .sum();
    if chars > MAX_EXEMPLAR_LABEL_CHARS {
        return Err(format!(
            "exemplar labels are {chars} characters, over the limit of {MAX_EXEMPLAR_LABEL_CHARS}"
        ));
    }
    let labels = into_labels(pairs)?;
    let (value, rest) = next_token(line, i).ok_or("missing exemplar value")?;
    let value = parse_value(value)?;
    let t = match next_token(line, rest) {
        Some((token, rest)) => {
            if next_token(line, rest).is_some() {
                return Err("unexpected data after the exemplar timestamp".to_string());
            }
            parse_timestamp(token, Dialect::OpenMetrics)?
        }
        None => sample_t.unwrap_or(0),
    };
    Ok(Exemplar { labels, value, t })
}

/// Parses `{name="value",...}` starting at the `{` at byte `i`, appending to `out`; returns the index
/// after the `}`. A trailing comma is allowed, as both formats' parsers in Prometheus allow it.
fn parse_labels(line: &str, mut i: usize, out: &mut Vec<Label>) -> Result<usize, String> {
    let b = line.as_bytes();
    debug_assert_eq!(b.get(i), Some(&b'{'));
    i += 1;
    loop {
        i = skip_blanks(b, i);
        match b.get(i) {
            Some(b'}') => return Ok(i + 1),
            None => return Err("unterminated label set".to_string()),
            _ => {}
        }
        let name_end = i + b[i..]
            .iter()
            .position(|c| !is_label_name_byte(*c))
            .unwrap_or(b.len() - i);
        let name = &line[i..name_end];
        if !is_label_name(name) {
            return Err(format!("invalid label name at {:?}", excerpt(&line[i..])));
        }
        i = skip_blanks(b, name_end);
        if b.get(i) != Some(&b'=') {
            return Err(format!("expected '=' after label name {name:?}"));
        }
        i = skip_blanks(b, i + 1);
        if b.get(i) != Some(&b'"') {
            return Err(format!("expected '\"' to open the value of label {name:?}"));
        }
        let (value, end) =
            quoted(line, i + 1).ok_or_else(|| format!("unterminated value of label {name:?}"))?;
        out.push(Label {
            name: name.to_string(),
            value,
        });
        i = skip_blanks(b, end);
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => return Ok(i + 1),
            _ => {
                return Err(format!(
                    "expected ',' or '}}' after the value of label {name:?}"
                ))
            }
        }
    }
}

/// The unescaped contents of a quoted string starting at byte `start` (after the opening quote), and the
/// index after the closing quote.
fn quoted(line: &str, start: usize) -> Option<(String, usize)> {
    let b = line.as_bytes();
    let mut i = start;
    let mut has_escape = false;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let raw = &line[start..i];
                let value = if has_escape {
                    unescape(raw, true).into_owned()
                } else {
                    raw.to_string()
                };
                return Some((value, i + 1));
            }
            b'\\' => {
                has_escape = true;
                i += 2;
            }
            _ => i += 1,
        }
    }
    None
}

/// Resolves `\\` and `\n`, and `\"` when `quote` is set (label values in both formats, HELP text in
/// OpenMetrics; Prometheus text HELP escapes only the first two). Any other escape is kept as written,
/// as Prometheus does.
fn unescape(s: &str, quote: bool) -> std::borrow::Cow<'_, str> {
    if !s.contains('\\') {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('"') if quote => out.push('"'),
            Some('n') => out.push('\n'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Sorts (exposition order is free) and checks for duplicate names, which Prometheus refuses at scrape
/// time; empty values are dropped, since an empty value means an absent label.
fn into_labels(mut labels: Vec<Label>) -> Result<Labels, String> {
    if !labels.windows(2).all(|w| w[0].name < w[1].name) {
        labels.sort_unstable_by(|a, c| a.name.cmp(&c.name));
        if let Some(w) = labels.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(format!("duplicate label name {:?}", w[0].name));
        }
    }
    labels.retain(|l| !l.value.is_empty());
    Ok(Labels::from_sorted(labels))
}

/// The next blank-separated token at or after byte `i`, and the index after it.
fn next_token(line: &str, i: usize) -> Option<(&str, usize)> {
    let b = line.as_bytes();
    let start = skip_blanks(b, i);
    if start >= b.len() {
        return None;
    }
    let end = start
        + b[start..]
            .iter()
            .position(|c| *c == b' ' || *c == b'\t')
            .unwrap_or(b.len() - start);
    Some((&line[start..end], end))
}

fn skip_blanks(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    i
}

/// Go's `strconv.ParseFloat` spellings that matter: decimals, exponents, `NaN`, `+Inf`, `-Inf`
/// (case-insensitive). A text `NaN` is never the staleness marker: Rust's NaN has a different payload.
fn parse_value(token: &str) -> Result<f64, String> {
    token
        .parse::<f64>()
        .map_err(|_| format!("invalid value {:?}", excerpt(token)))
}

/// Milliseconds from a timestamp token: integer milliseconds in Prometheus text, seconds in
/// OpenMetrics. Plain decimal seconds are converted exactly (digits past the millisecond truncated
/// toward zero, as Prometheus's `int64(ts * 1000)` intends), so `1.001` is 1001 ms and not 1000 after a
/// float round trip; other spellings (exponents) go through `f64`.
fn parse_timestamp(token: &str, dialect: Dialect) -> Result<i64, String> {
    let invalid = || format!("invalid timestamp {:?}", excerpt(token));
    if dialect == Dialect::PrometheusText {
        return token.parse::<i64>().map_err(|_| invalid());
    }
    if let Some(ms) = decimal_seconds_to_ms(token) {
        return Ok(ms);
    }
    let secs: f64 = token.parse().map_err(|_| invalid())?;
    let ms = secs * 1000.0;
    if !ms.is_finite() || ms.abs() >= 9.2e18 {
        return Err(invalid());
    }
    Ok(ms as i64)
}

fn decimal_seconds_to_ms(token: &str) -> Option<i64> {
    let (negative, digits) = match token.as_bytes().first()? {
        b'-' => (true, &token[1..]),
        b'+' => (false, &token[1..]),
        _ => (false, token),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|c| c.is_ascii_digit()) || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let int: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut ms_frac = 0i64;
    for (k, c) in frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .enumerate()
    {
        ms_frac += i64::from(c - b'0') * [100, 10, 1][k];
    }
    let ms = int.checked_mul(1000)?.checked_add(ms_frac)?;
    Some(if negative { -ms } else { ms })
}

fn is_metric_name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

fn is_label_name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn is_metric_name(s: &str) -> bool {
    s.as_bytes().first().is_some_and(|c| !c.is_ascii_digit()) && s.bytes().all(is_metric_name_byte)
}

fn is_label_name(s: &str) -> bool {
    s.as_bytes().first().is_some_and(|c| !c.is_ascii_digit()) && s.bytes().all(is_label_name_byte)
}

fn excerpt(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((cut, _)) => &s[..cut],
        None => s,
    }
}

/// Iterates over the entries of text held in memory.
pub fn entries(input: &str, dialect: Dialect) -> Entries<'_> {
    Entries {
        lines: input.split('\n'),
        parser: Parser::new(dialect),
        queue: VecDeque::new(),
        buf: Vec::new(),
        done: false,
    }
}

/// Iterator returned by [`entries`]. Stops after the first error.
#[derive(Debug)]
pub struct Entries<'a> {
    lines: std::str::Split<'a, char>,
    parser: Parser,
    queue: VecDeque<Entry>,
    buf: Vec<Entry>,
    done: bool,
}

impl Iterator for Entries<'_> {
    type Item = Result<Entry, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Some(Ok(e));
            }
            if self.done {
                return None;
            }
            let res = match self.lines.next() {
                Some(line) => self.parser.parse_line(line, &mut self.buf),
                None => {
                    self.done = true;
                    self.parser.finish(&mut self.buf)
                }
            };
            self.queue.extend(self.buf.drain(..));
            if let Err(e) = res {
                self.done = true;
                self.queue.clear();
                return Some(Err(e));
            }
        }
    }
}

#[cfg(test)]
mod tests;
