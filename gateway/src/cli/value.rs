//! Reading a secret value: from standard input only, never from argv,
//! which every user on the host can read in `ps`.

use std::io::{self, IsTerminal, Read};
use std::path::Path;

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

/// The lines an OAuth2 secret reads: the client secret (from
/// `secret_file`, or the first line of standard input) and, when
/// `refresh_token` is set, the refresh token on the next line of standard
/// input. Each missing line is named.
pub fn read_oauth2(
    input: &ValueInput,
    name: &str,
    secret_file: Option<&Path>,
    refresh_token: bool,
) -> Result<(SecretValue, Option<SecretValue>)> {
    if input.value.is_some() {
        bail!("secret values are never taken from the command line: pipe them on standard input");
    }
    let file_secret = secret_file
        .map(|path| {
            let raw =
                Zeroizing::new(std::fs::read(path).with_context(|| {
                    format!("reading the client secret from {}", path.display())
                })?);
            let text = std::str::from_utf8(&raw).map_err(|_| {
                anyhow::anyhow!(
                    "the client secret file {} is not UTF-8 text",
                    path.display()
                )
            })?;
            let first = text.lines().next().unwrap_or("");
            if first.is_empty() {
                bail!(
                    "the client secret file {} is empty: its first line must be the client secret",
                    path.display()
                );
            }
            Ok(SecretValue::new(first.to_owned()))
        })
        .transpose()?;
    let wanted = usize::from(file_secret.is_none()) + usize::from(refresh_token);
    let mut lines = read_lines(name, wanted, file_secret.is_none(), refresh_token)?.into_iter();
    let client_secret = match file_secret {
        Some(s) => s,
        None => lines.next().unwrap_or_default(),
    };
    let refresh = refresh_token.then(|| lines.next().unwrap_or_default());
    Ok((client_secret, refresh))
}

/// `wanted` lines from standard input (or prompted on a terminal), each
/// non-empty; what each line is, for the errors.
fn read_lines(
    name: &str,
    wanted: usize,
    secret_first: bool,
    refresh_token: bool,
) -> Result<Vec<SecretValue>> {
    let labels: Vec<&str> = [
        secret_first.then_some("the client secret"),
        refresh_token.then_some("the refresh token"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if wanted == 0 {
        return Ok(Vec::new());
    }
    let stdin = io::stdin();
    if stdin.is_terminal() {
        return labels
            .iter()
            .map(|label| {
                let v = rpassword::prompt_password(format!("{label} for {name} (not shown): "))
                    .context("reading from the terminal")?;
                if v.is_empty() {
                    bail!("{label} is empty");
                }
                Ok(SecretValue::new(v))
            })
            .collect();
    }
    let mut raw = Zeroizing::new(Vec::new());
    stdin
        .lock()
        .take(READ_LIMIT)
        .read_to_end(&mut raw)
        .context("reading standard input")?;
    let text = std::str::from_utf8(&raw)
        .map_err(|_| anyhow::anyhow!("standard input is not UTF-8 text"))?;
    let mut lines = text.lines().map(|l| l.strip_suffix('\r').unwrap_or(l));
    let mut out = Vec::new();
    for (i, label) in labels.iter().enumerate() {
        match lines.next() {
            Some(line) if !line.is_empty() => out.push(SecretValue::new(line.to_owned())),
            _ => bail!(
                "{label} is missing: standard input must have {} (line {} is empty or absent)",
                labels.join(" on the first line, then "),
                i + 1
            ),
        }
    }
    if lines.any(|l| !l.trim().is_empty()) {
        bail!(
            "standard input has more lines than {}: nothing was stored",
            labels.join(" and ")
        );
    }
    Ok(out)
}

/// A file's bytes, in a zeroizing buffer: key files, read whole.
pub fn read_file_bytes(path: &Path, what: &str) -> Result<Zeroizing<Vec<u8>>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("reading {what} from {}", path.display()))?;
    let mut raw = Zeroizing::new(Vec::new());
    file.take(READ_LIMIT)
        .read_to_end(&mut raw)
        .with_context(|| format!("reading {what} from {}", path.display()))?;
    Ok(raw)
}

/// A private key file (PEM text), whole.
pub fn read_file(path: &Path, what: &str) -> Result<SecretValue> {
    let raw = read_file_bytes(path, what)?;
    let text = std::str::from_utf8(&raw)
        .map_err(|_| anyhow::anyhow!("{what} in {} is not PEM text", path.display()))?;
    Ok(SecretValue::new(text.to_owned()))
}

/// A private key (PEM) on standard input, all its lines; a terminal
/// cannot type one, so there it asks for the file instead.
pub fn read_pem(input: &ValueInput, name: &str) -> Result<SecretValue> {
    if input.value.is_some() {
        bail!("private keys are never taken from the command line: use --private-key-file");
    }
    if io::stdin().is_terminal() {
        bail!(
            "give the private key of {name} with --private-key-file KEY.pem, or pipe the PEM on \
             standard input"
        );
    }
    let mut raw = Zeroizing::new(Vec::new());
    io::stdin()
        .lock()
        .take(READ_LIMIT)
        .read_to_end(&mut raw)
        .context("reading the private key from standard input")?;
    let text = std::str::from_utf8(&raw)
        .map_err(|_| anyhow::anyhow!("the private key on standard input is not PEM text"))?;
    Ok(SecretValue::new(text.to_owned()))
}
