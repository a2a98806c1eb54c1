//! The size of a StoppableContainer's node-local root filesystem: one parser of Kubernetes
//! quantities for the operator (the spec and the admin's default and maximum), `kubectl sc` and
//! the node plugin (which makes a filesystem of exactly that size), so all three read `10Gi` the
//! same way and refuse the same values with the same words.

/// The ext4 block size, and the unit every size is rounded up to.
pub const BLOCK_SIZE: u64 = 4096;
/// The smallest rootfs: ext4's journal (4 MiB at this size), inode tables and a usable overlay
/// upper (a package manager's cache alone takes tens of MiB) need at least this.
pub const MIN_SIZE_BYTES: u64 = 64 << 20;
/// The largest rootfs: the largest file an ext4 data root holds (16 TiB less one block). One
/// node-local rootfs beyond that is not what this is for; an admin maximum is usually far lower.
pub const MAX_SIZE_BYTES: u64 = (16 << 40) - BLOCK_SIZE;

/// A valid rootfs size in bytes: at least [`MIN_SIZE_BYTES`], at most [`MAX_SIZE_BYTES`], a
/// multiple of [`BLOCK_SIZE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RootfsSize(u64);

impl RootfsSize {
    /// Validates a size in bytes, rounding it up to a whole block.
    pub fn from_bytes(bytes: u64) -> Result<Self, SizeError> {
        let text = bytes.to_string();
        check_range(&text, u128::from(bytes))
    }

    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for RootfsSize {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&format_bytes(self.0))
    }
}

/// `bytes` in the largest binary unit that divides it (`64Mi`, `1Gi`, `12288Ki`, `4095`).
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u32); 6] = [("Ei", 60), ("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)];
    UNITS
        .iter()
        .find(|(_, shift)| bytes != 0 && bytes.trailing_zeros() >= *shift)
        .map_or_else(|| bytes.to_string(), |(unit, shift)| format!("{}{unit}", bytes >> shift))
}

/// A rootfs size that cannot be used, with what was wrong and what is expected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SizeError {
    #[error("the rootfs size is empty; give a Kubernetes quantity such as 10Gi")]
    Empty,
    #[error("the rootfs size {text:?} is not a Kubernetes quantity ({reason}); write it like 10Gi, 512Mi or 20G")]
    Malformed { text: String, reason: String },
    #[error("the rootfs size {text:?} is not positive; give a size of at least {}", format_bytes(MIN_SIZE_BYTES))]
    NotPositive { text: String },
    #[error(
        "the rootfs size {text:?} is {bytes} bytes, below the minimum of {}: the filesystem's journal and metadata and a \
         usable upper layer need at least that",
        format_bytes(MIN_SIZE_BYTES)
    )]
    TooSmall { text: String, bytes: u64 },
    #[error(
        "the rootfs size {text:?} is above the maximum of {} (the largest image file an ext4 data root holds)",
        format_bytes(MAX_SIZE_BYTES)
    )]
    TooLarge { text: String },
}

/// Parses a Kubernetes quantity (`10Gi`, `500M`, `1.5Gi`, `2e9`) into a rootfs size, rounded
/// up to a whole block. Accepts the whole quantity grammar (an optional sign, a decimal number,
/// a binary or decimal SI suffix or an exponent), so any value the API server accepts is either
/// used or refused here with a reason, never misread.
pub fn parse_size(text: &str) -> Result<RootfsSize, SizeError> {
    if text.is_empty() {
        return Err(SizeError::Empty);
    }
    let malformed = |reason: &str| SizeError::Malformed { text: text.to_owned(), reason: reason.to_owned() };
    let (negative, unsigned) = match text.as_bytes()[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (integer, rest) = split_digits(unsigned);
    let (fraction, suffix) = match rest.strip_prefix('.') {
        Some(after_point) => split_digits(after_point),
        None => ("", rest),
    };
    if integer.is_empty() && fraction.is_empty() {
        return Err(malformed("no digits"));
    }
    let (binary_shift, decimal_exponent) = parse_suffix(suffix).map_err(|reason| malformed(&reason))?;
    let digits = format!("{}{fraction}", integer.trim_start_matches('0'));
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Err(SizeError::NotPositive { text: text.to_owned() });
    }
    if negative {
        return Err(SizeError::NotPositive { text: text.to_owned() });
    }
    let too_large = || SizeError::TooLarge { text: text.to_owned() };
    // The value is `digits × 2^shift × 10^(exponent − fraction digits)`: exact integer arithmetic,
    // rounded up, so `0.5Gi` is exactly 512Mi and no size is silently made smaller.
    if digits.len() > 38 {
        return Err(too_large());
    }
    let mantissa: u128 = digits.parse().map_err(|_| too_large())?;
    let exponent = decimal_exponent - i64::try_from(fraction.len()).map_err(|_| malformed("too many digits"))?;
    let scaled = mantissa.checked_shl(binary_shift).filter(|value| value >> binary_shift == mantissa).ok_or_else(too_large)?;
    let bytes = if exponent >= 0 {
        let power = u32::try_from(exponent).ok().and_then(|exponent| 10u128.checked_pow(exponent)).ok_or_else(too_large)?;
        scaled.checked_mul(power).ok_or_else(too_large)?
    } else {
        match u32::try_from(-exponent).ok().and_then(|exponent| 10u128.checked_pow(exponent)) {
            Some(divisor) => scaled.div_ceil(divisor),
            // Smaller than one byte, but positive: one byte, which is then too small.
            None => 1,
        }
    };
    check_range(text, bytes)
}

fn check_range(text: &str, bytes: u128) -> Result<RootfsSize, SizeError> {
    if bytes == 0 {
        return Err(SizeError::NotPositive { text: text.to_owned() });
    }
    let rounded = bytes.div_ceil(u128::from(BLOCK_SIZE)) * u128::from(BLOCK_SIZE);
    if rounded > u128::from(MAX_SIZE_BYTES) {
        return Err(SizeError::TooLarge { text: text.to_owned() });
    }
    let rounded = u64::try_from(rounded).map_err(|_| SizeError::TooLarge { text: text.to_owned() })?;
    if rounded < MIN_SIZE_BYTES {
        return Err(SizeError::TooSmall { text: text.to_owned(), bytes: u64::try_from(bytes).unwrap_or(u64::MAX) });
    }
    Ok(RootfsSize(rounded))
}

fn split_digits(text: &str) -> (&str, &str) {
    text.split_at(text.find(|character: char| !character.is_ascii_digit()).unwrap_or(text.len()))
}

/// The binary shift and the decimal exponent a quantity suffix stands for.
fn parse_suffix(suffix: &str) -> Result<(u32, i64), String> {
    let known = match suffix {
        "" => Some((0, 0)),
        "Ki" => Some((10, 0)),
        "Mi" => Some((20, 0)),
        "Gi" => Some((30, 0)),
        "Ti" => Some((40, 0)),
        "Pi" => Some((50, 0)),
        "Ei" => Some((60, 0)),
        "m" => Some((0, -3)),
        "k" => Some((0, 3)),
        "M" => Some((0, 6)),
        "G" => Some((0, 9)),
        "T" => Some((0, 12)),
        "P" => Some((0, 15)),
        "E" => Some((0, 18)),
        _ => None,
    };
    if let Some(known) = known {
        return Ok(known);
    }
    // `E` alone is exa; `e`/`E` followed by a signed integer is an exponent (`1e9`, `5E-3`).
    let Some(exponent) = suffix.strip_prefix(['e', 'E']) else {
        return Err(format!("unknown suffix {suffix:?}; use Ki, Mi, Gi, Ti, Pi, Ei, or k, M, G, T, P, E"));
    };
    let (sign, digits) = match exponent.as_bytes().first() {
        Some(b'-') => (-1, &exponent[1..]),
        Some(b'+') => (1, &exponent[1..]),
        _ => (1, exponent),
    };
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(format!("the exponent {suffix:?} is not a whole number"));
    }
    // Any exponent past a few dozen is out of range either way; capped before it can overflow.
    let significant = digits.trim_start_matches('0');
    let value: i64 = if significant.len() > 6 { 1_000_000 } else { significant.parse().unwrap_or(0) };
    Ok((0, sign * value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(text: &str) -> RootfsSize {
        parse_size(text).expect("a valid size")
    }

    #[test]
    fn sizes_are_kubernetes_quantities_rounded_up_to_a_block() {
        let cases: &[(&str, u64)] = &[
            ("64Mi", 64 << 20),
            ("65536Ki", 64 << 20),
            ("10Gi", 10 << 30),
            ("+1Gi", 1 << 30),
            ("1.5Gi", 3 << 29),
            ("0.5Gi", 512 << 20),
            (".5Gi", 512 << 20),
            ("1.Gi", 1 << 30),
            ("0.0625Gi", 64 << 20),
            // Decimal units: 500 MB is not a whole number of blocks.
            ("500M", 500_002_816),
            ("1G", 1_000_001_536),
            ("100000k", 100_003_840),
            ("2e9", 2_000_003_072),
            ("2E9", 2_000_003_072),
            ("2e+9", 2_000_003_072),
            ("67108865", (64 << 20) + 4096),
            ("16383Gi", 16383 << 30),
            ("0000000001Gi", 1 << 30),
            ("1.0000000000000000000001Gi", (1 << 30) + 4096),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_size(text).map(RootfsSize::bytes), Ok(*bytes), "{text}");
        }
    }

    #[test]
    fn every_rejected_size_says_why() {
        let cases: &[(&str, &str)] = &[
            ("", "the rootfs size is empty; give a Kubernetes quantity such as 10Gi"),
            ("Gi", r#"the rootfs size "Gi" is not a Kubernetes quantity (no digits); write it like 10Gi, 512Mi or 20G"#),
            (".", r#"the rootfs size "." is not a Kubernetes quantity (no digits); write it like 10Gi, 512Mi or 20G"#),
            ("-", r#"the rootfs size "-" is not a Kubernetes quantity (no digits); write it like 10Gi, 512Mi or 20G"#),
            (
                "10GB",
                r#"the rootfs size "10GB" is not a Kubernetes quantity (unknown suffix "GB"; use Ki, Mi, Gi, Ti, Pi, Ei, or k, M, G, T, P, E); write it like 10Gi, 512Mi or 20G"#,
            ),
            (
                "10g",
                r#"the rootfs size "10g" is not a Kubernetes quantity (unknown suffix "g"; use Ki, Mi, Gi, Ti, Pi, Ei, or k, M, G, T, P, E); write it like 10Gi, 512Mi or 20G"#,
            ),
            (
                "10 Gi",
                r#"the rootfs size "10 Gi" is not a Kubernetes quantity (unknown suffix " Gi"; use Ki, Mi, Gi, Ti, Pi, Ei, or k, M, G, T, P, E); write it like 10Gi, 512Mi or 20G"#,
            ),
            (
                "1.2.3Gi",
                r#"the rootfs size "1.2.3Gi" is not a Kubernetes quantity (unknown suffix ".3Gi"; use Ki, Mi, Gi, Ti, Pi, Ei, or k, M, G, T, P, E); write it like 10Gi, 512Mi or 20G"#,
            ),
            (
                "1e",
                r#"the rootfs size "1e" is not a Kubernetes quantity (the exponent "e" is not a whole number); write it like 10Gi, 512Mi or 20G"#,
            ),
            (
                "1e1.5",
                r#"the rootfs size "1e1.5" is not a Kubernetes quantity (the exponent "e1.5" is not a whole number); write it like 10Gi, 512Mi or 20G"#,
            ),
            ("-1Gi", r#"the rootfs size "-1Gi" is not positive; give a size of at least 64Mi"#),
            ("0", r#"the rootfs size "0" is not positive; give a size of at least 64Mi"#),
            ("0.000Gi", r#"the rootfs size "0.000Gi" is not positive; give a size of at least 64Mi"#),
            (
                "63Mi",
                r#"the rootfs size "63Mi" is 66060288 bytes, below the minimum of 64Mi: the filesystem's journal and metadata and a usable upper layer need at least that"#,
            ),
            (
                "1.5",
                r#"the rootfs size "1.5" is 2 bytes, below the minimum of 64Mi: the filesystem's journal and metadata and a usable upper layer need at least that"#,
            ),
            (
                "100m",
                r#"the rootfs size "100m" is 1 bytes, below the minimum of 64Mi: the filesystem's journal and metadata and a usable upper layer need at least that"#,
            ),
            (
                "1e-50",
                r#"the rootfs size "1e-50" is 1 bytes, below the minimum of 64Mi: the filesystem's journal and metadata and a usable upper layer need at least that"#,
            ),
            (
                "1E3",
                r#"the rootfs size "1E3" is 1000 bytes, below the minimum of 64Mi: the filesystem's journal and metadata and a usable upper layer need at least that"#,
            ),
            ("16Ti", r#"the rootfs size "16Ti" is above the maximum of 17179869180Ki (the largest image file an ext4 data root holds)"#),
            ("1E", r#"the rootfs size "1E" is above the maximum of 17179869180Ki (the largest image file an ext4 data root holds)"#),
            ("8Ei", r#"the rootfs size "8Ei" is above the maximum of 17179869180Ki (the largest image file an ext4 data root holds)"#),
            (
                "1e999999999",
                r#"the rootfs size "1e999999999" is above the maximum of 17179869180Ki (the largest image file an ext4 data root holds)"#,
            ),
            (
                "999999999999999999999999999999999999999",
                r#"the rootfs size "999999999999999999999999999999999999999" is above the maximum of 17179869180Ki (the largest image file an ext4 data root holds)"#,
            ),
        ];
        for (text, message) in cases {
            let error = parse_size(text).expect_err(text);
            assert_eq!(error.to_string(), *message, "{text}");
        }
        assert_eq!(
            RootfsSize::from_bytes(0).map_err(|error| error.to_string()),
            Err(r#"the rootfs size "0" is not positive; give a size of at least 64Mi"#.to_owned())
        );
        assert_eq!(RootfsSize::from_bytes(MIN_SIZE_BYTES - 1).map(RootfsSize::bytes), Ok(MIN_SIZE_BYTES), "rounded up to a block");
        assert!(matches!(RootfsSize::from_bytes(MIN_SIZE_BYTES - BLOCK_SIZE), Err(SizeError::TooSmall { .. })));
        assert_eq!(RootfsSize::from_bytes(MIN_SIZE_BYTES + 1).map(RootfsSize::bytes), Ok(MIN_SIZE_BYTES + BLOCK_SIZE));
        assert_eq!(RootfsSize::from_bytes(MAX_SIZE_BYTES).map(RootfsSize::bytes), Ok(MAX_SIZE_BYTES));
        assert!(matches!(RootfsSize::from_bytes(MAX_SIZE_BYTES + 1), Err(SizeError::TooLarge { .. })));
    }

    #[test]
    fn sizes_print_in_the_largest_exact_binary_unit() {
        assert_eq!(format_bytes(64 << 20), "64Mi");
        assert_eq!(format_bytes(3 << 29), "1536Mi");
        assert_eq!(format_bytes((64 << 20) + 4096), "65540Ki");
        assert_eq!(format_bytes(4095), "4095");
        assert_eq!(format_bytes(0), "0");
        assert_eq!(size("10Gi").to_string(), "10Gi");
    }
}
