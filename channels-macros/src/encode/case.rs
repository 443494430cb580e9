//! `rename_all` rules, spelled and applied to field names exactly as serde
//! does, so a struct deriving both `Serialize` and `Encode` with the same
//! rule gets the same wire names from each. (A case-conversion crate such
//! as `heck` splits words differently, e.g. `lowercase` of `user_id`.)

/// A `rename_all` rule.
#[derive(Clone, Copy)]
pub(crate) enum RenameRule {
    Lower,
    Upper,
    Pascal,
    Camel,
    Snake,
    ScreamingSnake,
    Kebab,
    ScreamingKebab,
}

/// The rules under their serde spellings.
pub(crate) const RULES: [(&str, RenameRule); 8] = [
    ("lowercase", RenameRule::Lower),
    ("UPPERCASE", RenameRule::Upper),
    ("PascalCase", RenameRule::Pascal),
    ("camelCase", RenameRule::Camel),
    ("snake_case", RenameRule::Snake),
    ("SCREAMING_SNAKE_CASE", RenameRule::ScreamingSnake),
    ("kebab-case", RenameRule::Kebab),
    ("SCREAMING-KEBAB-CASE", RenameRule::ScreamingKebab),
];

impl RenameRule {
    /// The rule spelled `name`.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        RULES.iter().find(|(spelling, _)| *spelling == name).map(|(_, rule)| *rule)
    }

    /// The wire name of the field `field` (a snake_case Rust name, without
    /// `r#`). Like serde, `lowercase` and `snake_case` leave field names
    /// as they are: Rust fields are already both.
    pub(crate) fn apply(self, field: &str) -> String {
        match self {
            Self::Lower | Self::Snake => field.to_owned(),
            Self::Upper | Self::ScreamingSnake => field.to_ascii_uppercase(),
            Self::Pascal => {
                let mut pascal = String::with_capacity(field.len());
                let mut capitalize = true;
                for ch in field.chars() {
                    if ch == '_' {
                        capitalize = true;
                    } else if capitalize {
                        pascal.push(ch.to_ascii_uppercase());
                        capitalize = false;
                    } else {
                        pascal.push(ch);
                    }
                }
                pascal
            }
            Self::Camel => {
                let pascal = Self::Pascal.apply(field);
                let mut chars = pascal.chars();
                match chars.next() {
                    Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
                    None => pascal,
                }
            }
            Self::Kebab => field.replace('_', "-"),
            Self::ScreamingKebab => field.to_ascii_uppercase().replace('_', "-"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// serde's own table (serde_derive's `rename_fields` test), plus a
    /// leading underscore and a non-ASCII first letter.
    #[test]
    fn matches_serde() {
        let table = [
            ("outcome", "OUTCOME", "Outcome", "outcome", "outcome"),
            ("very_tasty", "VERY_TASTY", "VeryTasty", "veryTasty", "very-tasty"),
            ("a", "A", "A", "a", "a"),
            ("z42", "Z42", "Z42", "z42", "z42"),
            ("_id", "_ID", "Id", "id", "-id"),
            ("élan_vital", "éLAN_VITAL", "élanVital", "élanVital", "élan-vital"),
        ];
        for (field, upper, pascal, camel, kebab) in table {
            let apply = |name| RenameRule::from_name(name).unwrap().apply(field);
            assert_eq!(apply("lowercase"), field);
            assert_eq!(apply("snake_case"), field);
            assert_eq!(apply("UPPERCASE"), upper);
            assert_eq!(apply("SCREAMING_SNAKE_CASE"), upper);
            assert_eq!(apply("PascalCase"), pascal);
            assert_eq!(apply("camelCase"), camel);
            assert_eq!(apply("kebab-case"), kebab);
            assert_eq!(apply("SCREAMING-KEBAB-CASE"), upper.replace('_', "-"));
        }
        assert!(RenameRule::from_name("camelcase").is_none());
    }
}
