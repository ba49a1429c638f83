//! What an open-API answer means for the caller (D16): done, retry, give up, or alert.

/// The disposition of one open-API call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Disposition {
    /// `92020000`.
    Success,
    /// `92020003`: already activated; treat as activated and confirm with a heartbeat.
    AlreadyActivated,
    /// `92020004`: the buyer has not claimed the code; retry later and tell the seller.
    AwaitingClaim,
    /// The code is unknown or not activated (`92020005`, `92020011`, `92020020`): give up.
    Permanent,
    /// The request was wrong (`92020002`, `95000001`–`95000004`, `APIGW.0101`, `APIGW.0201` with 4xx):
    /// our bug, give up and alert.
    Rejected,
    /// Transient (`92020001`, HTTP 5xx, 429, `APIGW.0201` 502/504, throttling, timeouts, connection
    /// errors, and unknown codes): retry with exponential backoff and jitter.
    Retry,
    /// The gateway refused our credentials (`APIGW.0301`/`0302`/`0303`, or `92020001` with HTTP 403):
    /// alert, retry slowly.
    Credentials,
}

impl Disposition {
    /// Whether trying again may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::AwaitingClaim | Self::Retry | Self::Credentials)
    }

    /// Whether an operator must look (metrics, alerts).
    pub fn needs_attention(self) -> bool {
        matches!(self, Self::Rejected | Self::Credentials)
    }

    /// A short stable label, for metrics and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::AlreadyActivated => "already_activated",
            Self::AwaitingClaim => "awaiting_claim",
            Self::Permanent => "permanent",
            Self::Rejected => "rejected",
            Self::Retry => "retry",
            Self::Credentials => "credentials",
        }
    }
}

/// Classifies an answer by its HTTP status and the `error_code` of its JSON body (if it had one).
/// Both matter: the same `92020001` meant "unauthorized" with 403 and "internal error" with 500.
pub fn classify(http_status: u16, error_code: Option<&str>) -> Disposition {
    use crate::openapi::codes;
    match error_code.unwrap_or("") {
        codes::SUCCESS => Disposition::Success,
        codes::ILLEGAL_STATE => Disposition::AlreadyActivated,
        codes::NOT_RECEIVED => Disposition::AwaitingClaim,
        codes::NOT_EXIST | codes::NOT_ACTIVATED | codes::INVALID_IN_BATCH => Disposition::Permanent,
        codes::INVALID_PARAM | "95000001" | "95000002" | "95000003" | "95000004" => {
            Disposition::Rejected
        }
        codes::INTERNAL_ERROR if http_status == 403 => Disposition::Credentials,
        codes::INTERNAL_ERROR => Disposition::Retry,
        "APIGW.0301" | "APIGW.0302" | "APIGW.0303" => Disposition::Credentials,
        "APIGW.0101" => Disposition::Rejected,
        "APIGW.0201" if matches!(http_status, 400 | 413 | 414 | 494) => Disposition::Rejected,
        _ if http_status == 401 || http_status == 403 => Disposition::Credentials,
        // Everything else: 5xx, 429, throttling, and codes this version does not know (§4.8 says
        // to treat them as generic errors), is retried; the backoff is capped.
        _ => Disposition::Retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_code_has_its_disposition() {
        use Disposition::*;
        let table = [
            (200, "92020000", Success),
            (200, "92020001", Retry),
            (500, "92020001", Retry),
            (403, "92020001", Credentials),
            (200, "92020002", Rejected),
            (200, "92020003", AlreadyActivated),
            (200, "92020004", AwaitingClaim),
            (200, "92020005", Permanent),
            (200, "92020011", Permanent),
            (200, "92020020", Permanent),
            (400, "95000001", Rejected),
            (405, "95000002", Rejected),
            (415, "95000003", Rejected),
            (400, "95000004", Rejected),
            (404, "APIGW.0101", Rejected),
            (400, "APIGW.0201", Rejected),
            (413, "APIGW.0201", Rejected),
            (502, "APIGW.0201", Retry),
            (504, "APIGW.0201", Retry),
            (401, "APIGW.0301", Credentials),
            (403, "APIGW.0302", Credentials),
            (401, "APIGW.0303", Credentials),
            (429, "APIGW.0308", Retry),
            (200, "92029999", Retry),
        ];
        for (status, code, expected) in table {
            assert_eq!(classify(status, Some(code)), expected, "{status} {code}");
        }
    }

    #[test]
    fn bodies_without_a_code_go_by_status() {
        assert_eq!(classify(503, None), Disposition::Retry);
        assert_eq!(classify(500, None), Disposition::Retry);
        assert_eq!(classify(401, None), Disposition::Credentials);
        assert_eq!(classify(429, None), Disposition::Retry);
    }
}
