//! FHIRPath-like locations (`Patient.name[0].given[1]`) built lazily: the validator keeps a
//! chain of borrowed segments on the stack and renders it to a string only when it reports an
//! issue, so valid resources cost no allocation for locations.

/// One step of a location.
#[derive(Debug, Clone, Copy)]
enum Segment<'a> {
    /// The resource type at the root.
    Root(&'a str),
    /// A JSON key (a leading `_` of primitive extensions is dropped when rendering).
    Key(&'a str),
    /// A position in a JSON array.
    Index(usize),
}

/// A location inside the resource being validated.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    segment: Segment<'a>,
}

impl<'a> Path<'a> {
    /// The root of a resource of type `resource_type`.
    pub(crate) fn root(resource_type: &'a str) -> Path<'a> {
        Path { parent: None, segment: Segment::Root(resource_type) }
    }

    /// The element `key` below this location.
    pub(crate) fn key<'b>(&'b self, key: &'b str) -> Path<'b> {
        Path { parent: Some(self), segment: Segment::Key(key) }
    }

    /// Item `index` of the array at this location.
    pub(crate) fn index<'b>(&'b self, index: usize) -> Path<'b> {
        Path { parent: Some(self), segment: Segment::Index(index) }
    }

    /// The segments from the root to this location.
    fn segments(&self) -> Vec<Segment<'a>> {
        let mut segments = Vec::new();
        let mut current = Some(self);
        while let Some(path) = current {
            segments.push(path.segment);
            current = path.parent;
        }
        segments.reverse();
        segments
    }

    /// The JSON pointer (RFC 6901) of this location from the outermost resource.
    pub(crate) fn pointer(&self) -> String {
        let mut text = String::new();
        for segment in self.segments() {
            match segment {
                Segment::Root(_) => {}
                Segment::Key(key) => {
                    text.push('/');
                    text.push_str(&key.replace('~', "~0").replace('/', "~1"));
                }
                Segment::Index(index) => {
                    text.push('/');
                    text.push_str(&index.to_string());
                }
            }
        }
        text
    }

    /// The FHIRPath-like text of this location.
    pub(crate) fn render(&self) -> String {
        let mut text = String::new();
        for segment in self.segments() {
            match segment {
                Segment::Root(name) => text.push_str(name),
                Segment::Key(key) => {
                    if !text.is_empty() {
                        text.push('.');
                    }
                    text.push_str(key.strip_prefix('_').unwrap_or(key));
                }
                Segment::Index(index) => {
                    text.push('[');
                    text.push_str(&index.to_string());
                    text.push(']');
                }
            }
        }
        text
    }
}

/// The FHIRPath-like text of the JSON pointer `pointer` inside a resource of `root_type`, as
/// [`Path::render`] writes it.
pub(crate) fn render_pointer(root_type: &str, pointer: &str) -> String {
    let mut text = root_type.to_owned();
    for step in pointer.split('/').skip(1) {
        let step = step.replace("~1", "/").replace("~0", "~");
        if step.bytes().all(|byte| byte.is_ascii_digit()) && !step.is_empty() {
            text.push('[');
            text.push_str(&step);
            text.push(']');
        } else {
            text.push('.');
            text.push_str(step.strip_prefix('_').unwrap_or(&step));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_keys_and_indexes() {
        let root = Path::root("Patient");
        let name = root.key("name");
        let first = name.index(0);
        let given = first.key("_given");
        assert_eq!(given.index(1).render(), "Patient.name[0].given[1]");
        assert_eq!(root.render(), "Patient");
        assert_eq!(given.index(1).pointer(), "/name/0/_given/1");
        assert_eq!(root.pointer(), "");
        let pointer = given.index(1).pointer();
        assert_eq!(render_pointer("Patient", &pointer), given.index(1).render());
    }
}
