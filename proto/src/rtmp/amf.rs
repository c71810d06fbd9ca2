//! A non-allocating AMF0 *structure* walker (AMF0 spec 2.1-2.12) that vets command and data
//! messages before `rml_rtmp` decodes them.
//!
//! Owns: nesting depth and top-level shape of an AMF0 value sequence.
//! Does not: build values (rml_amf0 does that once we let the message through).
//!
//! Why it exists: `rml_amf0` 0.3 decodes nested objects/arrays by unbounded recursion, so a
//! peer can overflow the stack (an abort, which `catch_unwind` cannot stop) with a few MiB of
//! `03 00 01 'a' 03 ...`; and `rml_rtmp` 0.8 panics on commands with fewer than three values
//! (`Vec::drain(..3)`) and on `@setDataFrame` without its arguments (`data[0]`,
//! `data.remove(1)`).
//!
//! Invariant: the walker follows rml_amf0's reading rules exactly where rml_amf0 would go on
//! (short string reads are tolerated, a top-level end marker ends the sequence, a strict
//! array stops at the end of input), and it is never stricter, so whenever rml_amf0 would
//! recurse deeper than the limit the walker has already reported it.

/// AMF0 type markers understood by rml_amf0 0.3 (AMF0 spec 2.1).
const NUMBER: u8 = 0x00;
const BOOLEAN: u8 = 0x01;
const STRING: u8 = 0x02;
const OBJECT: u8 = 0x03;
const NULL: u8 = 0x05;
const UNDEFINED: u8 = 0x06;
const ECMA_ARRAY: u8 = 0x08;
const OBJECT_END: u8 = 0x09;
const STRICT_ARRAY: u8 = 0x0a;

/// What the walker learned about a message body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    /// The body parses the way rml_amf0 would parse it.
    Parsed {
        /// Number of top-level values.
        values: usize,
        /// The first value is the string `@setDataFrame`.
        first_is_set_data_frame: bool,
        /// The second value is the string `onMetaData`.
        second_is_on_metadata: bool,
    },
    /// rml_amf0 would fail on this body (it returns an error, it does not panic).
    Malformed,
}

/// The nesting limit was crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TooDeep;

enum Next {
    End,
    Value,
}

struct Walker<'a> {
    data: &'a [u8],
    pos: usize,
    max_depth: u32,
}

/// Inner error: either malformed (rml_amf0 errors too) or too deep.
enum WalkError {
    Malformed,
    TooDeep,
}

/// Walks an AMF0 value sequence as rml_amf0's `deserialize` would.
pub(super) fn inspect(data: &[u8], max_depth: u32) -> Result<Shape, TooDeep> {
    let mut w = Walker {
        data,
        pos: 0,
        max_depth,
    };
    let mut values = 0usize;
    let mut first_is_set_data_frame = false;
    let mut second_is_on_metadata = false;
    loop {
        let start = w.pos;
        match w.next_value(0) {
            Ok(Next::End) => break,
            Ok(Next::Value) => {
                let raw = &data[start..w.pos];
                match values {
                    0 => first_is_set_data_frame = is_string(raw, b"@setDataFrame"),
                    1 => second_is_on_metadata = is_string(raw, b"onMetaData"),
                    _ => {}
                }
                values += 1;
            }
            Err(WalkError::Malformed) => return Ok(Shape::Malformed),
            Err(WalkError::TooDeep) => return Err(TooDeep),
        }
    }
    Ok(Shape::Parsed {
        values,
        first_is_set_data_frame,
        second_is_on_metadata,
    })
}

/// True when `raw` is exactly an AMF0 string value with content `s`.
fn is_string(raw: &[u8], s: &[u8]) -> bool {
    raw.len() == 3 + s.len()
        && raw[0] == STRING
        && usize::from(u16::from_be_bytes([raw[1], raw[2]])) == s.len()
        && &raw[3..] == s
}

impl Walker<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], WalkError> {
        let end = self.pos.checked_add(n).ok_or(WalkError::Malformed)?;
        let bytes = self.data.get(self.pos..end).ok_or(WalkError::Malformed)?;
        self.pos = end;
        Ok(bytes)
    }

    /// rml_amf0 reads string bodies with a single `read`, which accepts a short read.
    fn skip_lenient(&mut self, n: usize) {
        self.pos = self.pos.saturating_add(n).min(self.data.len());
    }

    fn u16(&mut self) -> Result<usize, WalkError> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn u32(&mut self) -> Result<u32, WalkError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// `read_next_value`: end of input or an object-end marker ends the sequence.
    fn next_value(&mut self, depth: u32) -> Result<Next, WalkError> {
        let Some(&marker) = self.data.get(self.pos) else {
            return Ok(Next::End);
        };
        self.pos += 1;
        match marker {
            OBJECT_END => return Ok(Next::End),
            NUMBER => {
                self.take(8)?;
            }
            BOOLEAN => {
                self.take(1)?;
            }
            NULL | UNDEFINED => {}
            STRING => {
                let len = self.u16()?;
                self.skip_lenient(len);
            }
            OBJECT => self.object(depth + 1)?,
            ECMA_ARRAY => {
                self.u32()?; // associative count, ignored like rml_amf0 does
                self.object(depth + 1)?;
            }
            STRICT_ARRAY => {
                let count = self.u32()?;
                self.enter(depth + 1)?;
                for _ in 0..count {
                    if let Next::End = self.next_value(depth + 1)? {
                        break;
                    }
                }
            }
            _ => return Err(WalkError::Malformed),
        }
        Ok(Next::Value)
    }

    fn enter(&self, depth: u32) -> Result<(), WalkError> {
        if depth > self.max_depth {
            Err(WalkError::TooDeep)
        } else {
            Ok(())
        }
    }

    /// Object properties until an empty name followed by the end marker.
    fn object(&mut self, depth: u32) -> Result<(), WalkError> {
        self.enter(depth)?;
        loop {
            let name_len = self.u16()?;
            if name_len == 0 {
                return match self.take(1)?[0] {
                    OBJECT_END => Ok(()),
                    _ => Err(WalkError::Malformed),
                };
            }
            self.skip_lenient(name_len);
            match self.next_value(depth)? {
                Next::Value => {}
                Next::End => return Err(WalkError::Malformed),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rml_rtmp::rml_amf0::{self, Amf0Value};
    use std::collections::HashMap;

    fn enc(values: &[Amf0Value]) -> Vec<u8> {
        rml_amf0::serialize(&values.to_vec()).expect("serialize")
    }

    /// `depth` objects, each the value of property "a" of the one around it.
    fn nested(depth: usize) -> Vec<u8> {
        let mut out = vec![OBJECT];
        for i in 0..depth {
            out.extend_from_slice(&[0, 1, b'a']);
            out.push(if i + 1 < depth { OBJECT } else { NULL });
        }
        for _ in 0..depth {
            out.extend_from_slice(&[0, 0, OBJECT_END]);
        }
        out
    }

    #[test]
    fn shapes_of_real_messages() {
        let mut props = HashMap::new();
        props.insert("width".to_string(), Amf0Value::Number(320.0));
        props.insert("encoder".to_string(), Amf0Value::Utf8String("x".into()));
        let meta = enc(&[
            Amf0Value::Utf8String("@setDataFrame".into()),
            Amf0Value::Utf8String("onMetaData".into()),
            Amf0Value::Object(props),
        ]);
        assert_eq!(
            inspect(&meta, 8),
            Ok(Shape::Parsed {
                values: 3,
                first_is_set_data_frame: true,
                second_is_on_metadata: true
            })
        );
        let cmd = enc(&[
            Amf0Value::Utf8String("FCPublish".into()),
            Amf0Value::Number(3.0),
            Amf0Value::Null,
            Amf0Value::StrictArray(vec![Amf0Value::Boolean(true), Amf0Value::Undefined]),
        ]);
        assert!(matches!(
            inspect(&cmd, 8),
            Ok(Shape::Parsed {
                values: 4,
                first_is_set_data_frame: false,
                ..
            })
        ));
        assert_eq!(inspect(&[0x0b, 0], 8), Ok(Shape::Malformed));
        assert_eq!(inspect(&[NUMBER, 0, 0], 8), Ok(Shape::Malformed));
    }

    #[test]
    fn depth_limit() {
        let d = nested(5);
        // rml_amf0 agrees this is one value
        let mut cur = std::io::Cursor::new(&d[..]);
        assert_eq!(rml_amf0::deserialize(&mut cur).unwrap().len(), 1);
        assert!(matches!(
            inspect(&d, 5),
            Ok(Shape::Parsed { values: 1, .. })
        ));
        assert_eq!(inspect(&d, 4), Err(TooDeep));
        // deep enough to overflow a thread stack in rml_amf0: rejected without recursing
        assert_eq!(inspect(&nested(1_000_000), 32), Err(TooDeep));
        let mut arrays = Vec::new();
        for _ in 0..100_000 {
            arrays.extend_from_slice(&[STRICT_ARRAY, 0, 0, 0, 1]);
        }
        assert_eq!(inspect(&arrays, 32), Err(TooDeep));
    }

    proptest! {
        /// Wherever rml_amf0 succeeds, the walker agrees on the number of values.
        #[test]
        fn agrees_with_rml_amf0(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut cur = std::io::Cursor::new(&data[..]);
            // Shallow random input cannot overflow rml_amf0's stack.
            let rml = rml_amf0::deserialize(&mut cur);
            match (rml, inspect(&data, 64)) {
                (Ok(values), Ok(Shape::Parsed { values: n, .. })) => prop_assert_eq!(values.len(), n),
                (Ok(values), other) => prop_assert!(false, "rml parsed {} values, walker {:?}", values.len(), other),
                (Err(_), _) => {}
            }
        }
    }
}
