//! Small input validators shared by the emulators; each provider renders a [`Violation`] its own way.

use serde_json::Value;

/// One invalid field.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Violation {
    /// Field name (dotted for nested fields).
    pub field: String,
    /// Human message.
    pub msg: String,
    /// Pydantic-style error type (`missing`, `less_than_equal`, `enum`, ...).
    pub kind: &'static str,
}

impl Violation {
    pub(crate) fn new(field: &str, kind: &'static str, msg: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            msg: msg.into(),
            kind,
        }
    }
}

pub(crate) type V<T> = Result<T, Violation>;

pub(crate) fn obj<'a>(v: &'a Value, field: &str) -> V<&'a serde_json::Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| Violation::new(field, "dict_type", "Input should be a valid dictionary"))
}

/// A required, non-empty string.
pub(crate) fn req_str<'a>(v: &'a Value, field: &str) -> V<&'a str> {
    match v.get(field) {
        None | Some(Value::Null) => Err(Violation::new(field, "missing", "Field required")),
        Some(Value::String(s)) if s.trim().is_empty() => Err(Violation::new(
            field,
            "string_too_short",
            "String should have at least 1 character",
        )),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Violation::new(
            field,
            "string_type",
            "Input should be a valid string",
        )),
    }
}

pub(crate) fn opt_str<'a>(v: &'a Value, field: &str) -> V<Option<&'a str>> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Violation::new(
            field,
            "string_type",
            "Input should be a valid string",
        )),
    }
}

pub(crate) fn opt_enum<'a>(v: &'a Value, field: &str, allowed: &[&str]) -> V<Option<&'a str>> {
    match opt_str(v, field)? {
        None => Ok(None),
        Some(s) if allowed.contains(&s) => Ok(Some(s)),
        Some(_) => Err(Violation::new(
            field,
            "enum",
            format!("Input should be {}", quoted_list(allowed)),
        )),
    }
}

pub(crate) fn quoted_list(allowed: &[&str]) -> String {
    let q: Vec<String> = allowed.iter().map(|a| format!("'{a}'")).collect();
    match q.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

/// An optional integer within `[min, max]`.
pub(crate) fn opt_int(v: &Value, field: &str, min: i64, max: i64) -> V<Option<i64>> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let i = n
                .as_i64()
                .ok_or_else(|| Violation::new(field, "int_type", "Input should be a valid integer"))?;
            if i < min {
                Err(Violation::new(
                    field,
                    "greater_than_equal",
                    format!("Input should be greater than or equal to {min}"),
                ))
            } else if i > max {
                Err(Violation::new(
                    field,
                    "less_than_equal",
                    format!("Input should be less than or equal to {max}"),
                ))
            } else {
                Ok(Some(i))
            }
        }
        Some(_) => Err(Violation::new(
            field,
            "int_type",
            "Input should be a valid integer",
        )),
    }
}

/// An optional number within `[min, max]`.
pub(crate) fn opt_num(v: &Value, field: &str, min: f64, max: f64) -> V<Option<f64>> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if x.is_nan() || x < min {
                Err(Violation::new(
                    field,
                    "greater_than_equal",
                    format!("Input should be greater than or equal to {min}"),
                ))
            } else if x > max {
                Err(Violation::new(
                    field,
                    "less_than_equal",
                    format!("Input should be less than or equal to {max}"),
                ))
            } else {
                Ok(Some(x))
            }
        }
        Some(_) => Err(Violation::new(
            field,
            "float_type",
            "Input should be a valid number",
        )),
    }
}

pub(crate) fn opt_bool(v: &Value, field: &str) -> V<Option<bool>> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(Violation::new(
            field,
            "bool_type",
            "Input should be a valid boolean",
        )),
    }
}

/// A seed that must be a non-negative integer up to u64::MAX (fal accepts seeds above 2^53).
pub(crate) fn opt_u64(v: &Value, field: &str) -> V<Option<u64>> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| Violation::new(field, "int_type", "Input should be a valid non-negative integer")),
        Some(_) => Err(Violation::new(
            field,
            "int_type",
            "Input should be a valid integer",
        )),
    }
}

/// Unicode scalar count (what providers bill as characters).
pub(crate) fn chars(s: &str) -> u64 {
    s.chars().count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn validators() {
        let v = json!({"p": "x", "n": 5, "e": "b", "f": 0.2, "big": 18446744073709551615u64, "neg": -1});
        assert_eq!(req_str(&v, "p"), Ok("x"));
        assert_eq!(req_str(&v, "q").unwrap_err().kind, "missing");
        assert_eq!(opt_int(&v, "n", 1, 4).unwrap_err().kind, "less_than_equal");
        assert_eq!(opt_int(&v, "n", 1, 5), Ok(Some(5)));
        assert_eq!(opt_enum(&v, "e", &["a", "b"]), Ok(Some("b")));
        assert_eq!(
            opt_enum(&v, "e", &["a", "c"]).unwrap_err().msg,
            "Input should be 'a' or 'c'"
        );
        assert_eq!(
            opt_num(&v, "f", 0.5, 30.0).unwrap_err().kind,
            "greater_than_equal"
        );
        assert_eq!(opt_u64(&v, "big"), Ok(Some(u64::MAX)));
        assert!(opt_u64(&v, "neg").is_err());
        assert_eq!(chars("héllo"), 5);
    }
}
