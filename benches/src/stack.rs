//! The local stack as `scripts/lib/stack.sh` describes it in `<state>/env`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use url::Url;

/// Variables of a running stack.
#[derive(Debug, Clone)]
pub struct Stack {
    vars: HashMap<String, String>,
}

impl Stack {
    /// Reads `export NAME='value'` lines (values quoted by the stack script).
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read stack env {}: {e}", path.display()))?;
        Ok(Self::parse(&text))
    }

    fn parse(text: &str) -> Self {
        let mut vars = HashMap::new();
        for line in text.lines() {
            let Some(rest) = line.trim().strip_prefix("export ") else {
                continue;
            };
            let Some((name, raw)) = rest.split_once('=') else {
                continue;
            };
            vars.insert(name.to_owned(), unquote(raw));
        }
        Self { vars }
    }

    /// A variable.
    pub fn var(&self, name: &str) -> Result<&str, String> {
        self.vars
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| format!("the stack env has no {name}"))
    }

    /// A URL variable.
    pub fn url(&self, name: &str) -> Result<Url, String> {
        Url::parse(self.var(name)?).map_err(|e| format!("{name}: {e}"))
    }

    /// `host:port` of a URL variable.
    pub fn socket(&self, name: &str) -> Result<SocketAddr, String> {
        let url = self.url(name)?;
        let host = url.host_str().unwrap_or("127.0.0.1");
        let port = url.port_or_known_default().unwrap_or(80);
        format!("{host}:{port}")
            .parse()
            .map_err(|e| format!("{name}: not an IP address: {e}"))
    }

    /// Every `BRIDGE_*` and `AWS_*` variable: the functions' environment.
    pub fn function_env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .vars
            .iter()
            .filter(|(k, _)| k.starts_with("BRIDGE_") || k.starts_with("AWS_") || *k == "RUST_LOG")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.sort();
        env
    }
}

/// Undoes the shell quoting `'...'` with `'\''` for single quotes.
fn unquote(raw: &str) -> String {
    let mut out = String::new();
    let mut chars = raw.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '\'' => quoted = !quoted,
            '\\' if !quoted => {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_stack_env() {
        let stack = Stack::parse(
            "# comment\nexport HYDRA_ADMIN_URL='http://127.0.0.1:4445'\nexport BRIDGE_X='it'\\''s'\nexport AWS_REGION='us-east-1'\nexport OTHER='1'\n",
        );
        assert_eq!(stack.var("BRIDGE_X").expect("var"), "it's");
        assert_eq!(
            stack.socket("HYDRA_ADMIN_URL").expect("socket").port(),
            4445
        );
        let env = stack.function_env();
        assert_eq!(env.len(), 2);
        assert!(stack.var("MISSING").is_err());
    }
}
