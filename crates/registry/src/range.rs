//! Byte ranges a client asks for, resolved against a blob's size.

use blobs::ByteRange;

/// A single `bytes=` range as sent by a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// `a-b`
    Closed(u64, u64),
    /// `a-`
    From(u64),
    /// `-n`: the last n bytes.
    Suffix(u64),
}

impl RangeRequest {
    /// The bytes this request selects from a blob of `size`, or `None` if it selects none (416).
    pub fn resolve(self, size: u64) -> Option<ByteRange> {
        let (start, end) = match self {
            RangeRequest::Closed(a, b) if a <= b => (a, b.min(size.checked_sub(1)?)),
            RangeRequest::Closed(..) => return None,
            RangeRequest::From(a) => (a, size.checked_sub(1)?),
            RangeRequest::Suffix(0) => return None,
            RangeRequest::Suffix(n) => (size.saturating_sub(n), size.checked_sub(1)?),
        };
        (start <= end).then_some(ByteRange { start, end })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_against_size() {
        use RangeRequest::*;
        let r = |start, end| Some(ByteRange { start, end });
        let cases = [
            (Closed(0, 0), 10, r(0, 0)),
            (Closed(2, 5), 10, r(2, 5)),
            (Closed(2, 50), 10, r(2, 9)),
            (Closed(10, 12), 10, None),
            (Closed(5, 2), 10, None),
            (From(9), 10, r(9, 9)),
            (From(10), 10, None),
            (Suffix(3), 10, r(7, 9)),
            (Suffix(30), 10, r(0, 9)),
            (Suffix(0), 10, None),
            (From(0), 0, None),
            (Suffix(1), 0, None),
        ];
        for (req, size, want) in cases {
            assert_eq!(req.resolve(size), want, "{req:?} of {size}");
        }
    }
}
