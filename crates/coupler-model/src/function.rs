//! A function version's code as the control plane keeps it and a core runs it.

/// The code and settings a core needs to run one function version.
#[derive(Clone)]
pub struct FunctionCode {
    /// Qualified by the resolved version number, e.g.
    /// `arn:aws:lambda:us-east-1:123456789012:function:Temp:3`.
    pub version_arn: String,
    pub runtime: String,
    pub handler: String,
    /// Base64 SHA-256 of the zip (Lambda's `CodeSha256`).
    pub code_sha256: String,
    pub zip: Vec<u8>,
}

impl std::fmt::Debug for FunctionCode {
    /// The zip's size, not its bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionCode")
            .field("version_arn", &self.version_arn)
            .field("runtime", &self.runtime)
            .field("handler", &self.handler)
            .field("code_sha256", &self.code_sha256)
            .field("zip_bytes", &self.zip.len())
            .finish()
    }
}
