//! The bootstrap channel's byte handling: Vercel's command output is text (JSON strings), so `exec`
//! wraps the command to return its stdout and stderr base64-encoded; `upload` sends the tar stream
//! gzip-compressed, as the files endpoint wants, compressing chunk by chunk as it goes.

use std::io::Write as _;

use base64::Engine as _;
use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use futures::StreamExt;

use crate::ByteStream;

/// The `sh -c` script that runs `"$@"` with stdout and stderr in temporary files and prints them
/// base64-encoded on two lines, then exits with the command's code. The command's argv follows as
/// arguments (`sh -c SCRIPT sh ARGV…`), so nothing is quoted by hand; env and cwd are the API's own
/// fields. Needs `sh`, `mktemp` and `base64` in the image (Vercel's images have them).
pub(super) const EXEC_WRAPPER: &str = "o=$(mktemp) && e=$(mktemp) || exit 125\n\"$@\" >\"$o\" 2>\"$e\" </dev/null\nc=$?\n\
base64 -w0 \"$o\"; echo; base64 -w0 \"$e\"; echo\nrm -f \"$o\" \"$e\"\nexit $c\n";

/// Splits the two base64 lines [`EXEC_WRAPPER`] prints; `None` when the output is not that (the
/// wrapper itself failed).
pub(super) fn decode_output(stdout: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let text = std::str::from_utf8(stdout).ok()?;
    let mut lines = text.lines();
    let b64 = base64::engine::general_purpose::STANDARD;
    let out = b64.decode(lines.next()?.trim()).ok()?;
    let err = b64.decode(lines.next().unwrap_or("").trim()).ok()?;
    Some((out, err))
}

/// `archive` gzip-compressed as it streams (fast level: the runtime binary is the big one, and the
/// link is the bottleneck only on slow uplinks).
pub(super) fn gzip_stream(archive: ByteStream) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    struct St {
        input: Option<ByteStream>,
        enc: Option<GzEncoder<Vec<u8>>>,
    }
    let st = St { input: Some(archive), enc: Some(GzEncoder::new(Vec::new(), Compression::fast())) };
    futures::stream::unfold(st, |mut st| async move {
        loop {
            let input = st.input.as_mut()?;
            match input.next().await {
                Some(Ok(chunk)) => {
                    let enc = st.enc.as_mut().expect("encoder until the end");
                    if let Err(e) = enc.write_all(&chunk) {
                        st.input = None;
                        return Some((Err(e), st));
                    }
                    let out = std::mem::take(enc.get_mut());
                    if !out.is_empty() {
                        return Some((Ok(Bytes::from(out)), st));
                    }
                }
                Some(Err(e)) => {
                    st.input = None;
                    return Some((Err(e), st));
                }
                None => {
                    st.input = None;
                    let enc = st.enc.take().expect("encoder until the end");
                    return Some((enc.finish().map(Bytes::from), st));
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[test]
    fn exec_output_round_trips() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let out = format!("{}\n{}\n", b64.encode([0u8, 255, 10]), b64.encode("oops\n"));
        assert_eq!(decode_output(out.as_bytes()), Some((vec![0, 255, 10], b"oops\n".to_vec())));
        assert_eq!(decode_output(b"\n\n"), Some((vec![], vec![])));
        assert_eq!(decode_output(b"sh: base64: not found"), None);
    }

    #[tokio::test]
    async fn gzip_stream_is_the_input_compressed() {
        let mut data = vec![0u8; 300_000];
        getrandom::fill(&mut data).expect("random");
        let chunks: Vec<std::io::Result<Bytes>> = data.chunks(65_536).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        let gz: Vec<u8> = gzip_stream(Box::pin(futures::stream::iter(chunks)))
            .map(|c| c.expect("chunk").to_vec())
            .concat()
            .await;
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut back).expect("gunzip");
        assert!(back == data);
    }
}
