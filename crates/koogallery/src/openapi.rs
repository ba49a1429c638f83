//! The marketplace's open API (云商店开放接口) for License 2.0: activate and heartbeat, v1.
//!
//! Responses are read tolerantly (§4.8): unknown fields are kept in `extra`, every field the
//! marketplace might omit is optional, and the JSON document hidden inside the
//! `license_code_info` string is decoded while its raw text is kept.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// Path of the v1 activate API.
pub const ACTIVATE_PATH: &str = "/api/mkp-openapi-public/global/v1/license/activate";
/// Path of the v1 heartbeat API.
pub const HEARTBEAT_PATH: &str = "/api/mkp-openapi-public/global/v1/license/heartbeat";

/// Body of `POST …/v1/license/activate` (激活授权码).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivateRequest {
    /// The license code.
    pub license: String,
    /// Actual delivery time, UTC `yyyyMMddHHmmss`; not earlier than the order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub real_effect_time: Option<String>,
}

/// Body of `POST …/v1/license/heartbeat` (授权码心跳检测 / 查询授权码).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    /// The license code.
    pub license: String,
    /// Who is using the software.
    #[serde(rename = "heartbeatInfo")]
    pub heartbeat_info: HeartbeatInfo,
}

/// `heartbeatInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatInfo {
    /// End-user identifier inside the seller's software (always sent, D15).
    pub third_party_account: String,
    /// Client login IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

/// Any open-API response, and the gateway's own error bodies (`APIGW.*`), which share
/// `error_code` and `error_msg`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiResponse<T> {
    /// Result code: `92020000` on success, `APIGW.xxxx` from the gateway.
    #[serde(default)]
    pub error_code: String,
    /// Message.
    #[serde(default)]
    pub error_msg: String,
    /// Payload, on success.
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
    /// Gateway request id, on gateway errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Fields this version does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn none<T>() -> Option<T> {
    None
}

/// `data` of a successful activation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivateData {
    /// The license details, a JSON document inside a string.
    pub license_code_info: EmbeddedLicenseCodeInfo,
    /// Fields this version does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The decoded content of `license_code_info`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LicenseCodeInfo {
    /// `ALIVE`.
    #[serde(default)]
    pub status: Option<String>,
    /// Estimated expiry, `yyyyMMddHHmmss`.
    #[serde(default)]
    pub expire_time: Option<String>,
    /// Product id.
    #[serde(default)]
    pub product_id: Option<String>,
    /// Purchase order id.
    #[serde(default)]
    pub order_id: Option<String>,
    /// Quantity attribute.
    #[serde(default)]
    pub amount: Option<serde_json::Number>,
    /// Fields this version does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `license_code_info`: the raw string as received, and its decoding when it is a JSON object.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddedLicenseCodeInfo {
    /// The string exactly as received.
    pub raw: String,
    /// The decoded document, `None` when the string is not a JSON object.
    pub parsed: Option<LicenseCodeInfo>,
}

impl EmbeddedLicenseCodeInfo {
    /// Decodes a raw `license_code_info` string.
    pub fn from_raw(raw: impl Into<String>) -> Self {
        let raw = raw.into();
        let parsed = serde_json::from_str(&raw).ok();
        Self { raw, parsed }
    }
}

impl Serialize for EmbeddedLicenseCodeInfo {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for EmbeddedLicenseCodeInfo {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::from_raw)
    }
}

/// `data` of a heartbeat answer (`LicenseInfo`, extensible).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct HeartbeatData {
    /// License code.
    #[serde(default)]
    pub license_code: Option<String>,
    /// `ALIVE`, `EXPIRED` or `RELEASED`.
    #[serde(default)]
    pub status: Option<String>,
    /// Activation time.
    #[serde(default)]
    pub activate_time: Option<String>,
    /// Product id.
    #[serde(default)]
    pub product_id: Option<String>,
    /// Expiry (authoritative), when given.
    #[serde(default)]
    pub expire_time: Option<String>,
    /// Fields this version does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Open-API result codes (§4.7).
pub mod codes {
    /// Success.
    pub const SUCCESS: &str = "92020000";
    /// Internal error (HTTP 500), or unauthorized (HTTP 403) in the 2.0-era table.
    pub const INTERNAL_ERROR: &str = "92020001";
    /// Invalid parameters.
    pub const INVALID_PARAM: &str = "92020002";
    /// Illegal state: already activated.
    pub const ILLEGAL_STATE: &str = "92020003";
    /// The buyer has not claimed the code yet.
    pub const NOT_RECEIVED: &str = "92020004";
    /// The code does not exist.
    pub const NOT_EXIST: &str = "92020005";
    /// The code is not activated.
    pub const NOT_ACTIVATED: &str = "92020011";
    /// A batch contains an invalid code.
    pub const INVALID_IN_BATCH: &str = "92020020";
}
