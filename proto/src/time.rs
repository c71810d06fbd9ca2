//! LEAD-STUB
#![allow(missing_docs)]
pub fn format_rfc3339_ms(_ms: i64) -> String {
    unimplemented!()
}
