//! JSON written as it is made: an object's members and an array's elements one at a time, each
//! element a small [`serde_json::Value`] serialized and dropped. A report of a module with a
//! million symbols holds one symbol's value at a time, where a whole `Value` tree held some
//! 2 KB per symbol (20-35x the file). The text is serde_json's compact form, as `to_string`
//! of the same tree would give.

use std::io::{self, Write};

use serde_json::Value as Json;

/// Writes one JSON object to `out`: `members` adds its members in order.
pub(crate) fn object(
    out: &mut dyn Write,
    members: impl FnOnce(&mut ObjectOut<'_>) -> io::Result<()>,
) -> io::Result<()> {
    out.write_all(b"{")?;
    members(&mut ObjectOut { out: &mut *out, first: true })?;
    out.write_all(b"}")
}

/// An object being written: its members so far.
pub(crate) struct ObjectOut<'w> {
    out: &'w mut dyn Write,
    first: bool,
}

impl std::fmt::Debug for ObjectOut<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectOut").field("first", &self.first).finish_non_exhaustive()
    }
}

impl ObjectOut<'_> {
    /// The member `key`: `value`.
    pub(crate) fn value(&mut self, key: &str, value: &Json) -> io::Result<()> {
        self.key(key)?;
        serde_json::to_writer(&mut *self.out, value).map_err(io::Error::from)
    }

    /// The member `key`: an array of `elements`, each written as it comes.
    pub(crate) fn array(&mut self, key: &str, elements: impl IntoIterator<Item = Json>) -> io::Result<()> {
        self.key(key)?;
        array(&mut *self.out, elements)
    }

    /// The member `key`: an object whose members `members` adds.
    pub(crate) fn object(
        &mut self,
        key: &str,
        members: impl FnOnce(&mut ObjectOut<'_>) -> io::Result<()>,
    ) -> io::Result<()> {
        self.key(key)?;
        object(&mut *self.out, members)
    }

    /// `"key":`, after a comma unless it is the first.
    fn key(&mut self, key: &str) -> io::Result<()> {
        if !std::mem::take(&mut self.first) {
            self.out.write_all(b",")?;
        }
        serde_json::to_writer(&mut *self.out, key).map_err(io::Error::from)?;
        self.out.write_all(b":")
    }
}

/// Writes a JSON array of `elements` to `out`, each as it comes.
pub(crate) fn array(out: &mut dyn Write, elements: impl IntoIterator<Item = Json>) -> io::Result<()> {
    out.write_all(b"[")?;
    for (i, element) in elements.into_iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        serde_json::to_writer(&mut *out, &element).map_err(io::Error::from)?;
    }
    out.write_all(b"]")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{array, object};

    #[test]
    fn streamed_text_is_what_the_whole_tree_would_print() {
        let tree = json!({
            "file": "a \"quoted\" name\n",
            "count": 3,
            "empty": [],
            "symbols": [{"name": "f", "value": 1}, {"name": "g", "value": null}],
            "note": {"table": [{"a": "1"}], "none": []},
        });
        let mut out = Vec::new();
        object(&mut out, |o| {
            o.value("file", &tree["file"])?;
            o.value("count", &tree["count"])?;
            o.array("empty", [])?;
            o.array("symbols", tree["symbols"].as_array().unwrap().iter().cloned())?;
            o.object("note", |n| {
                n.array("table", [json!({"a": "1"})])?;
                n.array("none", [])
            })
        })
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), tree.to_string());
        let mut out = Vec::new();
        array(&mut out, [json!(1), json!("two")]).unwrap();
        assert_eq!(out, b"[1,\"two\"]");
    }

    #[test]
    fn an_empty_object_is_braces() {
        let mut out = Vec::new();
        object(&mut out, |_| Ok(())).unwrap();
        assert_eq!(out, b"{}");
    }
}
