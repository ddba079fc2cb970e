//! Reading the untyped objects of GitOps controllers: their CRDs are not ours, so the
//! adapters read JSON by pointer rather than binding to types that drift between releases.

use serde_json::Value;

/// The non-empty string at `pointer`.
pub fn text<'v>(value: &'v Value, pointer: &str) -> Option<&'v str> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty())
}

/// The items of the array at `pointer`, none if there is no array.
pub fn items<'v>(value: &'v Value, pointer: &str) -> impl Iterator<Item = &'v Value> {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}
