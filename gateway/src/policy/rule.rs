//! What a rule does to the requests it matches.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why a rule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("method {0:?} is not an HTTP method (letters only, e.g. GET or POST)")]
    BadMethod(String),
    #[error(
        "rate {0:?} must be N/PERIOD with N from 1 to 1000000 and PERIOD one of s, min, h, day, \
         optionally with a count (e.g. 10/min, 100/15min)"
    )]
    BadRate(String),
    #[error("a rule needs exactly one action: --allow, --block, --approve or --rate N/PERIOD")]
    NoAction,
}

/// An HTTP method, upper case. `None` where a method is optional means any.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Method(String);

impl Method {
    pub fn parse(text: &str) -> Result<Self, RuleError> {
        let ok =
            !text.is_empty() && text.len() <= 32 && text.bytes().all(|b| b.is_ascii_alphabetic());
        if ok {
            Ok(Method(text.to_ascii_uppercase()))
        } else {
            Err(RuleError::BadMethod(text.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Method {
    type Error = RuleError;
    fn try_from(text: String) -> Result<Self, RuleError> {
        Method::parse(&text)
    }
}

impl From<Method> for String {
    fn from(m: Method) -> String {
        m.0
    }
}

/// A rate: `count` requests per `period`, enforced as a token bucket of
/// `count` tokens refilled evenly over the period (no double burst at a
/// window edge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rate {
    pub count: u32,
    pub period_secs: u32,
}

const MAX_RATE_COUNT: u32 = 1_000_000;

impl Rate {
    /// Parses `N/PERIOD`: `10/s`, `60/min`, `1000/h`, `5000/day`, `100/15min`.
    pub fn parse(text: &str) -> Result<Self, RuleError> {
        let bad = || RuleError::BadRate(text.to_owned());
        let (count, period) = text.split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        if count == 0 || count > MAX_RATE_COUNT {
            return Err(bad());
        }
        let period = period.trim();
        let digits = period.bytes().take_while(u8::is_ascii_digit).count();
        let (mult, unit) = period.split_at(digits);
        let mult: u32 = if mult.is_empty() {
            1
        } else {
            mult.parse().map_err(|_| bad())?
        };
        let unit_secs = match unit {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hour" => 3600,
            "d" | "day" => 86_400,
            _ => return Err(bad()),
        };
        let period_secs = mult
            .checked_mul(unit_secs)
            .filter(|&p| p > 0 && p <= 7 * 86_400)
            .ok_or_else(bad)?;
        Ok(Rate { count, period_secs })
    }

    pub fn period(&self) -> Duration {
        Duration::from_secs(u64::from(self.period_secs))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.period_secs;
        match p {
            1 => write!(f, "{}/s", self.count),
            60 => write!(f, "{}/min", self.count),
            3600 => write!(f, "{}/h", self.count),
            86_400 => write!(f, "{}/day", self.count),
            _ if p.is_multiple_of(60) => write!(f, "{}/{}min", self.count, p / 60),
            _ => write!(f, "{}/{}s", self.count, p),
        }
    }
}

/// What a matching rule does. Precedence when several rules match one
/// request: block, then approve, then rate, then allow
/// ([`super::engine`] has the whole table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum RuleAction {
    Block,
    Approve,
    Rate(Rate),
    /// Lets matching requests out under a deny default; never lifts a
    /// block, an approval or a rate limit.
    Allow,
}

impl RuleAction {
    pub fn kind(&self) -> &'static str {
        match self {
            RuleAction::Block => "block",
            RuleAction::Approve => "approve",
            RuleAction::Rate(_) => "rate",
            RuleAction::Allow => "allow",
        }
    }
}

impl fmt::Display for RuleAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleAction::Block => f.write_str("block"),
            RuleAction::Approve => f.write_str("approve"),
            RuleAction::Rate(rate) => write!(f, "rate {rate}"),
            RuleAction::Allow => f.write_str("allow"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print() {
        for (text, count, secs, shown) in [
            ("10/s", 10, 1, "10/s"),
            ("60/min", 60, 60, "60/min"),
            ("1000/h", 1000, 3600, "1000/h"),
            ("5/day", 5, 86_400, "5/day"),
            ("100/15min", 100, 900, "100/15min"),
            ("3/30s", 3, 30, "3/30s"),
        ] {
            let rate = Rate::parse(text).unwrap();
            assert_eq!((rate.count, rate.period_secs), (count, secs), "{text}");
            assert_eq!(rate.to_string(), shown);
        }
    }

    #[test]
    fn bad_rates_are_refused() {
        for bad in [
            "",
            "10",
            "0/s",
            "-1/s",
            "10/",
            "10/week",
            "10/0s",
            "x/s",
            "10/8day",
            "2000000/s",
        ] {
            assert!(Rate::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn methods_are_upper_cased() {
        assert_eq!(Method::parse("post").unwrap().as_str(), "POST");
        assert!(Method::parse("GE T").is_err());
        assert!(Method::parse("").is_err());
    }
}
