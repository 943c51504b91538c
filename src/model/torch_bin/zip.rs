//! The zip container torch.save writes: entries stored uncompressed, found through the central
//! directory (zip64 records where present), each checked against its local header.

use std::collections::HashMap;
use std::ops::Range;

use super::reader::Reader;
use super::Parse;

pub(super) const LOCAL_HEADER: u32 = 0x0403_4b50;
pub(super) const CENTRAL_HEADER: u32 = 0x0201_4b50;
pub(super) const END_OF_CENTRAL_DIR: u32 = 0x0605_4b50;
const ZIP64_END: u32 = 0x0606_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;

/// What the central directory says of one entry.
struct Entry {
    local_header: u64,
    compressed: u64,
    size: u64,
    method: u16,
    flags: u16,
    crc: u32,
}

/// A zip file's entries by name, found through its central directory.
pub(super) struct Zip<'a> {
    file: &'a [u8],
    entries: HashMap<&'a str, Entry>,
}

impl<'a> Zip<'a> {
    /// The central directory, found from the end record (zip64 records where present).
    pub(super) fn parse(file: &'a [u8]) -> Parse<Self> {
        let end = find_end_record(file)?;
        let mut r = Reader::at(file, end + 4, "end of central directory")?;
        let (disk, cd_disk, count_here, mut count) = (r.u16()?, r.u16()?, r.u16()? as u64, r.u16()? as u64);
        let (mut cd_size, mut cd_offset) = (r.u32()? as u64, r.u32()? as u64);
        let zip64 = end >= 20 && le32(file, end - 20) == Some(ZIP64_LOCATOR);
        if zip64 {
            let mut loc = Reader::at(file, end - 16, "zip64 end locator")?;
            let (_, record) = (loc.u32()?, loc.u64()?);
            let record = usize::try_from(record).map_err(|_| "zip64 end record beyond the file".to_string())?;
            let mut r = Reader::at(file, record, "zip64 end record")?;
            if r.u32()? != ZIP64_END {
                return Err(format!("no zip64 end record at byte {record}, where its locator points"));
            }
            let _ = (r.u64()?, r.u16()?, r.u16()?);
            let (disk, cd_disk, count_here) = (r.u32()?, r.u32()?, r.u64()?);
            count = r.u64()?;
            (cd_size, cd_offset) = (r.u64()?, r.u64()?);
            if disk != 0 || cd_disk != 0 || count_here != count {
                return Err("spans several disks, which is not supported".into());
            }
        } else {
            if count == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_offset == 0xFFFF_FFFF {
                return Err("its end record points to zip64 records that are missing".into());
            }
            if disk != 0 || cd_disk != 0 || count_here != count {
                return Err("spans several disks, which is not supported".into());
            }
        }
        let cd =
            range_in(file, cd_offset, cd_size).ok_or_else(|| format!("central directory ({cd_size} bytes at {cd_offset}) lies outside the file"))?;
        if count > cd_size / 46 {
            return Err(format!("{count} entries cannot fit a central directory of {cd_size} bytes"));
        }
        let mut r = Reader::new(&file[cd], "central directory");
        let mut entries = HashMap::new();
        for _ in 0..count {
            let (name, entry) = read_central_entry(&mut r)?;
            if entries.insert(name, entry).is_some() {
                return Err(format!("entry `{name}` appears twice"));
            }
        }
        Ok(Zip { file, entries })
    }

    /// The one `<archive>/data.pkl` entry.
    pub(super) fn data_pkl(&self) -> Parse<&'a str> {
        let mut found = self.entries.keys().filter(|n| n.strip_suffix("/data.pkl").is_some_and(|p| !p.is_empty() && !p.contains('/')));
        match (found.next(), found.next()) {
            (Some(name), None) => Ok(name),
            (None, _) => Err("no `<archive>/data.pkl` entry: not a torch.save file".into()),
            (Some(a), Some(b)) => Err(format!("two pickles (`{a}`, `{b}`): not a torch.save file")),
        }
    }

    /// The bytes of entry `name` (None where there is no such entry), checked to be stored,
    /// unencrypted and inside the file.
    pub(super) fn find(&self, name: &str) -> Parse<Option<Range<usize>>> {
        let Some(e) = self.entries.get(name) else { return Ok(None) };
        if e.flags & 1 != 0 {
            return Err(format!("zip entry `{name}` is encrypted"));
        }
        if e.method != 0 {
            return Err(format!(
                "zip entry `{name}` is compressed (method {}); torch.save stores entries uncompressed: \
                 re-save it with torch.save or convert to safetensors",
                e.method
            ));
        }
        if e.compressed != e.size {
            return Err(format!("zip entry `{name}` is stored but its sizes differ ({} and {})", e.compressed, e.size));
        }
        let header = usize::try_from(e.local_header).map_err(|_| format!("zip entry `{name}`: local header beyond the file"))?;
        let mut r = Reader::at(self.file, header, "local header")?;
        if r.u32()? != LOCAL_HEADER {
            return Err(format!("zip entry `{name}`: no local header at byte {header}"));
        }
        r.skip(22)?;
        let (name_len, extra_len) = (r.u16()? as usize, r.u16()? as usize);
        if r.take(name_len)? != name.as_bytes() {
            return Err(format!("zip entry `{name}`: its local header names another file"));
        }
        r.skip(extra_len)?;
        let start = (header + r.pos) as u64;
        let range = range_in(self.file, start, e.size)
            .ok_or_else(|| format!("zip entry `{name}` ({} bytes at {start}) runs past the end of the file", e.size))?;
        Ok(Some(range))
    }

    /// Like [`Zip::find`], for a small entry read whole (data.pkl, byteorder), whose CRC is then
    /// checked; storages are not (that would read every weight twice).
    pub(super) fn find_checked(&self, name: &str) -> Parse<Option<Range<usize>>> {
        let Some(range) = self.find(name)? else { return Ok(None) };
        if crc32(&self.file[range.clone()]) != self.entries[name].crc {
            return Err(format!("zip entry `{name}` fails its CRC check (corrupted file)"));
        }
        Ok(Some(range))
    }
}

fn read_central_entry<'a>(r: &mut Reader<'a>) -> Parse<(&'a str, Entry)> {
    if r.u32()? != CENTRAL_HEADER {
        return Err(format!("no central directory entry at byte {} of it", r.pos - 4));
    }
    r.skip(4)?;
    let (flags, method) = (r.u16()?, r.u16()?);
    r.skip(4)?;
    let crc = r.u32()?;
    let (mut compressed, mut size) = (r.u32()? as u64, r.u32()? as u64);
    let (name_len, extra_len, comment_len) = (r.u16()? as usize, r.u16()? as usize, r.u16()? as usize);
    let mut disk = r.u16()? as u32;
    r.skip(6)?;
    let mut local_header = r.u32()? as u64;
    let name = std::str::from_utf8(r.take(name_len)?).map_err(|_| "an entry name is not UTF-8".to_string())?;
    let mut extra = Reader::new(r.take(extra_len)?, "extra field");
    r.skip(comment_len)?;
    let wants64 = size == 0xFFFF_FFFF || compressed == 0xFFFF_FFFF || local_header == 0xFFFF_FFFF || disk == 0xFFFF;
    let mut got64 = false;
    while extra.remaining() >= 4 {
        let (id, len) = (extra.u16()?, extra.u16()? as usize);
        let mut data = Reader::new(extra.take(len)?, "zip64 extra field");
        if id != 1 {
            continue;
        }
        got64 = true;
        // Only the fields that are saturated in the header are present, in this order.
        if size == 0xFFFF_FFFF {
            size = data.u64()?;
        }
        if compressed == 0xFFFF_FFFF {
            compressed = data.u64()?;
        }
        if local_header == 0xFFFF_FFFF {
            local_header = data.u64()?;
        }
        if disk == 0xFFFF {
            disk = data.u32()?;
        }
    }
    if wants64 && !got64 {
        return Err(format!("entry `{name}` needs a zip64 extra field and has none"));
    }
    if disk != 0 {
        return Err(format!("entry `{name}` lies on another disk (multi-disk zips are not supported)"));
    }
    Ok((name, Entry { local_header, compressed, size, method, flags, crc }))
}

/// The end of central directory record: the last position where its signature stands with a
/// comment that ends exactly at the end of the file.
fn find_end_record(file: &[u8]) -> Parse<usize> {
    if file.len() < 22 {
        return Err("too short for a zip file".into());
    }
    let lowest = file.len().saturating_sub(22 + 0xFFFF);
    let mut pos = file.len() - 22;
    loop {
        if le32(file, pos) == Some(END_OF_CENTRAL_DIR) && le16(file, pos + 20).map(usize::from) == Some(file.len() - pos - 22) {
            return Ok(pos);
        }
        if pos == lowest {
            return Err("no end of central directory record (truncated?)".into());
        }
        pos -= 1;
    }
}

/// `len` bytes at `start`, where they lie inside `file`.
fn range_in(file: &[u8], start: u64, len: u64) -> Option<Range<usize>> {
    let end = start.checked_add(len)?;
    if end > file.len() as u64 {
        return None;
    }
    Some(start as usize..end as usize)
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

pub(super) fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// The zip CRC-32 (IEEE).
pub(super) fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |c, &b| CRC_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8))
}
