//! Phone numbers: whatever a person types, normalized to E.164 (`+15551234567`) by libphonenumber's rules.

use phonenumber::Mode;
use phonenumber::country::Id;

/// Why a phone number was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PhoneError {
    /// The text is not a phone number at all.
    #[error("not a phone number")]
    Unparseable,
    /// It parses, but no such number can exist (wrong length for its region, unassigned prefix).
    #[error("not a valid phone number")]
    Invalid,
}

/// Normalizes `input` to E.164, reading numbers without `+` as numbers of `default_region`.
pub fn normalize(input: &str, default_region: Id) -> Result<String, PhoneError> {
    let input = input.trim();
    // libphonenumber accepts absurdly long inputs and letters (vanity numbers); a login form does not need either.
    if input.is_empty() || input.len() > 32 || input.chars().any(|c| c.is_alphabetic()) {
        return Err(PhoneError::Unparseable);
    }
    let number =
        phonenumber::parse(Some(default_region), input).map_err(|_| PhoneError::Unparseable)?;
    if !phonenumber::is_valid(&number) {
        return Err(PhoneError::Invalid);
    }
    Ok(number.format().mode(Mode::E164).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_forms_normalize_to_e164() {
        for input in [
            "+1 (201) 555-0123",
            "201-555-0123",
            "(201) 555 0123",
            "+12015550123",
            " 2015550123 ",
        ] {
            assert_eq!(
                normalize(input, Id::US).as_deref(),
                Ok("+12015550123"),
                "{input}"
            );
        }
        assert_eq!(
            normalize("030 901820", Id::DE).as_deref(),
            Ok("+4930901820")
        );
        assert_eq!(
            normalize("+44 20 7946 0958", Id::US).as_deref(),
            Ok("+442079460958")
        );
        assert_eq!(
            normalize("07911 123456", Id::GB).as_deref(),
            Ok("+447911123456")
        );
    }

    #[test]
    fn garbage_is_refused() {
        for input in [
            "",
            "hello",
            "12",
            "+",
            "1-800-FLOWERS",
            "+1 555",
            &"9".repeat(40),
        ] {
            assert!(normalize(input, Id::US).is_err(), "{input:?}");
        }
    }

    #[test]
    fn impossible_numbers_are_invalid() {
        assert_eq!(
            normalize("+1 123 456 7890", Id::US),
            Err(PhoneError::Invalid)
        );
    }
}
