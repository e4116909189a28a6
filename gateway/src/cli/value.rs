//! Reading a secret value: from standard input only, never from argv,
//! which every user on the host can read in `ps`.

use std::io::{self, IsTerminal, Read};

use anyhow::{Context, Result, bail};
use zeroize::Zeroizing;

use super::args::ValueInput;
use airlock::service::types::SecretValue;

/// Anything longer is refused by the daemon anyway; stop reading there.
const READ_LIMIT: u64 = 64 * 1024;

pub fn read(input: &ValueInput, name: &str) -> Result<SecretValue> {
    if input.value.is_some() {
        bail!(
            "secret values are never taken from the command line, where other users can \
             read them (ps, shell history): pipe it on standard input instead, e.g. \
             `printf %s \"$KEY\" | airlock secret add {name} ...`"
        );
    }
    let stdin = io::stdin();
    if stdin.is_terminal() && !input.value_stdin {
        let value = rpassword::prompt_password(format!("value for {name} (not shown): "))
            .context("reading the value from the terminal")?;
        return Ok(SecretValue::new(value));
    }
    let mut raw = Zeroizing::new(Vec::new());
    stdin
        .lock()
        .take(READ_LIMIT)
        .read_to_end(&mut raw)
        .context("reading the value from standard input")?;
    let mut text =
        Zeroizing::new(String::from_utf8(std::mem::take(&mut *raw)).map_err(|_| {
            anyhow::anyhow!("the secret value on standard input is not UTF-8 text")
        })?);
    // `echo KEY | airlock ...` adds one newline; it is not part of the key.
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(SecretValue::new(std::mem::take(&mut *text)))
}
