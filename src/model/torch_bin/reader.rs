//! Bounds-checked little-endian reads, shared by the zip container and the pickle.

use super::Parse;

/// Little-endian reads that fail, naming `what`, instead of running past the end.
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    /// Where the next read starts, from the start of `bytes`.
    pub(super) pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Reader { bytes, pos: 0, what }
    }

    /// From byte `pos` of `file` on.
    pub(super) fn at(file: &'a [u8], pos: usize, what: &'static str) -> Parse<Self> {
        let bytes = file.get(pos..).ok_or_else(|| format!("{what} at byte {pos} lies beyond the file"))?;
        Ok(Reader { bytes, pos: 0, what })
    }

    pub(super) fn take(&mut self, n: usize) -> Parse<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| format!("{} is cut short ({n} bytes needed at byte {} of {})", self.what, self.pos, self.bytes.len()))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    pub(super) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub(super) fn skip(&mut self, n: usize) -> Parse<()> {
        self.take(n).map(|_| ())
    }

    pub(super) fn u8(&mut self) -> Parse<u8> {
        Ok(self.take(1)?[0])
    }

    pub(super) fn u16(&mut self) -> Parse<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap_or_default()))
    }

    pub(super) fn u32(&mut self) -> Parse<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }

    pub(super) fn u64(&mut self) -> Parse<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap_or_default()))
    }

    /// Bytes up to the next newline (GLOBAL's operands), without it.
    pub(super) fn line(&mut self) -> Parse<&'a [u8]> {
        let rest = &self.bytes[self.pos..];
        let n = rest.iter().position(|&b| b == b'\n').ok_or_else(|| format!("{} ends inside a GLOBAL name", self.what))?;
        let line = &rest[..n];
        self.pos += n + 1;
        Ok(line)
    }
}
