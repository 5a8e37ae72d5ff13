//! `.npy` files of 2-D `uint8` arrays, byte-identical to `numpy.save`.

use std::path::Path;

use crate::error::{DataError, Result};
use crate::mask::Mask;

const MAGIC: &[u8] = b"\x93NUMPY";
/// Largest header accepted when reading.
const MAX_HEADER: usize = 1 << 16;

/// Memory order of a saved array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Row-major (`fortran_order: False`), e.g. `np.zeros`.
    C,
    /// Column-major (`fortran_order: True`): what `np.save` writes for the
    /// masks pycocotools decodes (`refer.getMask`).
    Fortran,
}

/// The bytes `np.save` writes for a `uint8` array of shape `(h, w)` in the
/// given memory order (format 1.0, header padded to 64 bytes with numpy's
/// growth-axis spare space).
///
/// ```
/// use segany_data::mask::Mask;
/// use segany_data::npy::{from_npy_bytes, to_npy_bytes, Order};
/// let m = Mask::from_vec(2, 3, vec![0, 1, 2, 0, 1, 0])?;
/// for order in [Order::C, Order::Fortran] {
///     let bytes = to_npy_bytes(&m, order);
///     assert_eq!(bytes.len(), 128 + 6); // 128-byte header + 6 data bytes
///     assert_eq!(from_npy_bytes(&bytes, "example")?, m);
/// }
/// # Ok::<(), segany_data::DataError>(())
/// ```
pub fn to_npy_bytes(mask: &Mask, order: Order) -> Vec<u8> {
    let (h, w) = (mask.height(), mask.width());
    let (flag, growth) = match order {
        Order::C => ("False", h),
        Order::Fortran => ("True", w),
    };
    let mut header = format!("{{'descr': '|u1', 'fortran_order': {flag}, 'shape': ({h}, {w}), }}");
    header.push_str(&" ".repeat(21usize.saturating_sub(growth.to_string().len())));
    let hlen = header.len() + 1;
    let padlen = 64 - ((MAGIC.len() + 2 + 2 + hlen) % 64);
    header.push_str(&" ".repeat(padlen));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + h * w);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    match order {
        Order::C => out.extend_from_slice(mask.as_slice()),
        Order::Fortran => {
            let d = mask.as_slice();
            for x in 0..w {
                out.extend((0..h).map(|y| d[y * w + x]));
            }
        }
    }
    out
}

/// Writes [`to_npy_bytes`] to `path`.
pub fn write_npy(path: &Path, mask: &Mask, order: Order) -> Result<()> {
    std::fs::write(path, to_npy_bytes(mask, order)).map_err(|e| DataError::io(path, e))
}

/// Reads a 2-D `uint8`/`bool` array (C or Fortran order) from `path`.
pub fn read_npy(path: &Path) -> Result<Mask> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    from_npy_bytes(&bytes, &path.display().to_string())
}

/// Parses the bytes of a 2-D `uint8`/`bool` `.npy` array; `name` is used in
/// errors.
pub fn from_npy_bytes(bytes: &[u8], name: &str) -> Result<Mask> {
    let err = |m: &str| DataError::Npy {
        path: name.into(),
        message: m.to_string(),
    };
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(err("missing \\x93NUMPY magic"));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(err(&format!("format version {v}"))),
    };
    if hlen > MAX_HEADER || start + hlen > bytes.len() {
        return Err(err("truncated header"));
    }
    let header =
        std::str::from_utf8(&bytes[start..start + hlen]).map_err(|_| err("header is not text"))?;
    let compact: String = header.chars().filter(|c| !c.is_whitespace()).collect();
    let descr_ok = ["'descr':'|u1'", "'descr':'<u1'", "'descr':'|b1'"]
        .iter()
        .any(|d| compact.contains(d));
    if !descr_ok {
        return Err(err(&format!("dtype in {header:?} is not uint8/bool")));
    }
    let fortran = compact.contains("'fortran_order':True");
    let shape = compact
        .split_once("'shape':(")
        .and_then(|(_, r)| r.split_once(')'))
        .map(|(s, _)| s)
        .ok_or_else(|| err("no shape"))?;
    let dims: Vec<usize> = shape
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| err(&format!("shape ({shape}) is not integers")))?;
    let [h, w] = dims[..] else {
        return Err(err(&format!("shape ({shape}) is not 2-D")));
    };
    let data = &bytes[start + hlen..];
    if h.checked_mul(w) != Some(data.len()) {
        return Err(err(&format!("{h}x{w} array but {} data bytes", data.len())));
    }
    let data = if fortran {
        let mut out = vec![0u8; h * w];
        for x in 0..w {
            for y in 0..h {
                out[y * w + x] = data[x * h + y];
            }
        }
        out
    } else {
        data.to_vec()
    };
    Mask::from_vec(h, w, data)
}
