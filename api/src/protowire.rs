//! A reader of the protobuf wire format for decoders on the ingest hot path, which borrow strings and
//! bytes from the request body instead of building prost messages (one `String` per field). Each
//! decoder walks its messages with a [`Reader`] and turns a [`WireError`] into its own error.

pub const WIRE_VARINT: u64 = 0;
pub const WIRE_I64: u64 = 1;
pub const WIRE_LEN: u64 = 2;
pub const WIRE_I32: u64 = 5;

/// Why a body is not valid protobuf, and where: `what` went wrong in a `message` at its byte `pos`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    pub what: &'static str,
    pub message: &'static str,
    pub pos: usize,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} in a {} at its byte {}",
            self.what, self.message, self.pos
        )
    }
}

/// Reads the fields of one message, named `message` in errors.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    message: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], message: &'static str) -> Self {
        Reader {
            buf,
            pos: 0,
            message,
        }
    }

    pub fn err(&self, what: &'static str) -> WireError {
        WireError {
            what,
            message: self.message,
            pos: self.pos,
        }
    }

    pub fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    #[inline]
    pub fn varint(&mut self) -> Result<u64, WireError> {
        // Keys, lengths of short fields and small numbers: one byte.
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b));
            }
        }
        self.varint_long()
    }

    fn varint_long(&mut self) -> Result<u64, WireError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| self.err("truncated varint"))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(self.err("varint too long"))
    }

    pub fn fixed64(&mut self) -> Result<u64, WireError> {
        let b = self
            .buf
            .get(self.pos..self.pos + 8)
            .ok_or_else(|| self.err("truncated fixed64"))?;
        self.pos += 8;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let n = usize::try_from(self.varint()?).map_err(|_| self.err("length overflow"))?;
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| self.err("length overflow"))?;
        let b = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| self.err("truncated length-delimited field"))?;
        self.pos = end;
        Ok(b)
    }

    pub fn str(&mut self) -> Result<&'a str, WireError> {
        let b = self.bytes()?;
        std::str::from_utf8(b).map_err(|_| self.err("invalid UTF-8 in a string field"))
    }

    /// Field number and wire type of the next key.
    pub fn key(&mut self) -> Result<(u64, u64), WireError> {
        let k = self.varint()?;
        // A key is a 32-bit varint (field number < 2^29), as every protobuf decoder requires.
        if k > u64::from(u32::MAX) {
            return Err(self.err("invalid key: more than 32 bits"));
        }
        if k >> 3 == 0 {
            return Err(self.err("field number 0"));
        }
        Ok((k >> 3, k & 7))
    }

    pub fn skip(&mut self, wire: u64) -> Result<(), WireError> {
        match wire {
            WIRE_VARINT => self.varint().map(drop),
            WIRE_I64 => self.fixed64().map(drop),
            WIRE_LEN => self.bytes().map(drop),
            WIRE_I32 => {
                self.pos = self
                    .pos
                    .checked_add(4)
                    .filter(|&p| p <= self.buf.len())
                    .ok_or_else(|| self.err("truncated fixed32"))?;
                Ok(())
            }
            _ => Err(self.err("invalid wire type")),
        }
    }

    /// The bytes of a known length-delimited field whose key said `wire`.
    pub fn bytes_of(&mut self, wire: u64) -> Result<&'a [u8], WireError> {
        self.expect(wire, WIRE_LEN)?;
        self.bytes()
    }

    /// The text of a known string field whose key said `wire`.
    pub fn str_of(&mut self, wire: u64) -> Result<&'a str, WireError> {
        self.expect(wire, WIRE_LEN)?;
        self.str()
    }

    /// The value of a known varint field whose key said `wire`.
    pub fn varint_of(&mut self, wire: u64) -> Result<u64, WireError> {
        self.expect(wire, WIRE_VARINT)?;
        self.varint()
    }

    /// The value of a known 64-bit field whose key said `wire`.
    pub fn fixed64_of(&mut self, wire: u64) -> Result<u64, WireError> {
        self.expect(wire, WIRE_I64)?;
        self.fixed64()
    }

    /// Checks that a known field came with its declared wire type, as a protobuf decoder does.
    pub fn expect(&self, wire: u64, want: u64) -> Result<(), WireError> {
        if wire == want {
            Ok(())
        } else {
            Err(self.err("invalid wire type for a known field"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_prost_writes() {
        // field 1: varint 300; field 2: "hé"; field 3: fixed64; field 4: fixed32 (skipped)
        let mut buf = vec![0x08, 0xac, 0x02, 0x12, 3, b'h', 0xc3, 0xa9, 0x19];
        buf.extend_from_slice(&7u64.to_le_bytes());
        buf.extend_from_slice(&[0x25, 1, 2, 3, 4]);
        let mut r = Reader::new(&buf, "test.Message");
        assert_eq!(r.key().unwrap(), (1, WIRE_VARINT));
        assert_eq!(r.varint().unwrap(), 300);
        assert_eq!(r.key().unwrap(), (2, WIRE_LEN));
        assert_eq!(r.str().unwrap(), "hé");
        assert_eq!(r.key().unwrap(), (3, WIRE_I64));
        assert_eq!(r.fixed64().unwrap(), 7);
        let (_, w) = r.key().unwrap();
        r.skip(w).unwrap();
        assert!(r.done());
    }

    #[test]
    fn truncation_and_bad_keys_are_errors_with_a_position() {
        let mut r = Reader::new(&[0x12, 5, b'a'], "test.Message");
        r.key().unwrap();
        let e = r.bytes().unwrap_err();
        assert_eq!(
            e.to_string(),
            "truncated length-delimited field in a test.Message at its byte 2"
        );
        assert_eq!(
            Reader::new(&[0x00], "m").key().unwrap_err().what,
            "field number 0"
        );
        assert_eq!(
            Reader::new(&[0x0f], "m").skip(7).unwrap_err().what,
            "invalid wire type"
        );
        assert_eq!(
            Reader::new(&[1, 0xff], "m").str().unwrap_err().what,
            "invalid UTF-8 in a string field"
        );
    }
}
