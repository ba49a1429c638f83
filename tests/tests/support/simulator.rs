//! The local marketplace (`koogallery sim`) a test talks to.

use super::*;

pub const SIM_AK: &str = "AKSIMULATOR000000";

pub const SIM_SK: &str = "SKSIMULATOR00000000000000000000000000000";

/// A running `koogallery sim`; killed when dropped.
pub struct Simulator {
    pub child: Child,
    pub url: String,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Simulator {
    pub fn start() -> Self {
        let mut child = Command::new(binaries().join("koogallery"))
            .args([
                "sim",
                "--listen",
                "127.0.0.1:0",
                "--ak",
                SIM_AK,
                "--sk",
                SIM_SK,
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("the simulator starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ready: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("simulator ready line: {line}"));
        let url = format!("http://{}", ready["listen"].as_str().unwrap());
        Self { child, url }
    }

    pub async fn put(&self, license: &str, state: &str) {
        let response = reqwest::Client::new()
            .put(format!("{}/admin/licenses/{license}", self.url))
            .json(&serde_json::json!({"state": state, "expire_time": "20301231235959", "order_id": "CS7001", "product_id": "OFFI7"}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }

    pub async fn fault(&self, fault: Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/admin/faults", self.url))
            .json(&fault)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }

    pub async fn requests(&self) -> Vec<Value> {
        reqwest::Client::new()
            .get(format!("{}/admin/requests", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}
