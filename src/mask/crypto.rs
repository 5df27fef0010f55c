//! Keyed masks: HMAC-SHA256 tokens and FF1 format-preserving encryption.
//! All primitives come from RustCrypto crates (`hmac`, `sha2`, `aes`) and
//! the `fpe` crate; this module only wires keys, alphabets and encodings.

use aes::Aes256;
use data_encoding::{BASE32_NOPAD, HEXLOWER};
use fpe::ff1::{FlexibleNumeralString, FF1};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::catalogue::Args;
use super::{KeyRing, MaskError};

pub(super) type HmacSha256 = Hmac<Sha256>;

/// A keyed HMAC for one purpose. The key ring key is first turned into a
/// sub-key per purpose so that one key named by several masks (hash, noise,
/// date_shift, fpe) never lets the output of one predict another.
pub(super) fn derive_mac(key: &[u8], purpose: &str) -> HmacSha256 {
    // HMAC zero-pads keys shorter than its 64-byte block, so padding the
    // 32-byte sub-key here is the same key, through the infallible API.
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(&derive_key(key, purpose));
    <HmacSha256 as hmac::digest::KeyInit>::new(&block.into())
}

fn derive_key(key: &[u8], purpose: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    if let Ok(mut m) = HmacSha256::new_from_slice(key) {
        m.update(b"pgveil/");
        m.update(purpose.as_bytes());
        out.copy_from_slice(&m.finalize().into_bytes());
    }
    out
}

/// A keyed pseudo-random function of one 64-bit input: AES-256 of the
/// input block under a per-purpose sub-key. A block cipher is a PRF on
/// distinct inputs, and AES-NI makes it several times cheaper than HMAC on
/// the per-value path of `noise` and `date_shift`.
pub(super) struct Prf {
    cipher: Aes256,
}

impl Prf {
    pub(super) fn new(key: &[u8], purpose: &str) -> Prf {
        use aes::cipher::KeyInit;
        Prf {
            cipher: Aes256::new(&derive_key(key, purpose).into()),
        }
    }

    /// 64 uniformly distributed bits for `input`.
    pub(super) fn u64(&self, input: u64) -> u64 {
        use aes::cipher::BlockEncrypt;
        let mut block = [0u8; 16];
        block[..8].copy_from_slice(&input.to_be_bytes());
        let mut block = block.into();
        self.cipher.encrypt_block(&mut block);
        let mut out = [0u8; 8];
        out.copy_from_slice(&block[..8]);
        u64::from_be_bytes(out)
    }
}

#[derive(Clone, Copy)]
enum Encoding {
    Hex,
    Base32,
}

/// `hash(key, length, encoding, prefix)`.
pub(super) struct Hasher {
    mac: HmacSha256,
    encoding: Encoding,
    length: usize,
    prefix: String,
}

impl Hasher {
    pub(super) fn build(a: &Args, keys: &KeyRing) -> Result<Hasher, MaskError> {
        let key = a.key("key", keys)?;
        let (encoding, max) = match a.string("encoding")? {
            "hex" => (Encoding::Hex, 64),
            "base32" => (Encoding::Base32, 52),
            other => {
                return Err(a.bad(
                    "encoding",
                    &format!("`{other}` is not an encoding; use hex or base32"),
                ))
            }
        };
        let length = a.int("length")?;
        // Below 8 characters tokens collide often enough to merge customers in joins.
        let length = usize::try_from(length)
            .ok()
            .filter(|l| (8..=max).contains(l))
            .ok_or_else(|| {
                a.bad(
                    "length",
                    &format!("{length} is out of range; use 8 to {max}"),
                )
            })?;
        Ok(Hasher {
            mac: derive_mac(key, "hash"),
            encoding,
            length,
            prefix: a.string("prefix")?.to_string(),
        })
    }

    pub(super) fn token(&self, input: &[u8]) -> String {
        let mut m = self.mac.clone();
        m.update(input);
        let tag = m.finalize().into_bytes();
        let mut buf = [0u8; 64];
        let enc = match self.encoding {
            Encoding::Hex => &HEXLOWER,
            Encoding::Base32 => &BASE32_NOPAD,
        };
        // Encode only the bytes the token shows: 2 hex characters per
        // byte, 8 base32 characters per 5 bytes (whole groups keep the
        // characters identical to encoding the full tag).
        let bytes = match self.encoding {
            Encoding::Hex => self.length.div_ceil(2),
            Encoding::Base32 => (self.length.div_ceil(8) * 5).min(tag.len()),
        };
        let n = enc.encode_len(bytes);
        enc.encode_mut(&tag[..bytes], &mut buf[..n]);
        let mut out = String::with_capacity(self.prefix.len() + self.length);
        out.push_str(&self.prefix);
        // The encodings only produce ASCII, one byte per character.
        out.extend(buf[..self.length].iter().map(|b| char::from(*b)));
        out
    }
}

/// The characters FF1 permutes, and each one's numeral.
pub(super) struct Alphabet {
    chars: Vec<char>,
    ascii: [u16; 128],
}

const NONE: u16 = u16::MAX;

impl Alphabet {
    pub(super) fn new(spec: &str) -> Result<Alphabet, String> {
        const DIGITS: &str = "0123456789";
        const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
        const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let chars: Vec<char> = match spec {
            "digits" => DIGITS.chars().collect(),
            "lower" => LOWER.chars().collect(),
            "upper" => UPPER.chars().collect(),
            "alpha" => UPPER.chars().chain(LOWER.chars()).collect(),
            "alnum" => DIGITS
                .chars()
                .chain(UPPER.chars())
                .chain(LOWER.chars())
                .collect(),
            literal => literal.chars().collect(),
        };
        if chars.len() < 2 {
            return Err(format!(
                "`{spec}` has fewer than 2 characters; use digits, lower, upper, alpha, alnum or the literal characters"
            ));
        }
        if chars.len() > 1 << 16 {
            return Err("more than 65536 characters".to_string());
        }
        let mut ascii = [NONE; 128];
        for (i, c) in chars.iter().enumerate() {
            if chars[..i].contains(c) {
                return Err(format!(
                    "`{c}` appears twice; each character must be listed once"
                ));
            }
            if c.is_ascii() {
                ascii[*c as usize] = i as u16;
            }
        }
        Ok(Alphabet { chars, ascii })
    }

    pub(super) fn radix(&self) -> u32 {
        self.chars.len() as u32
    }

    fn numeral(&self, c: char) -> Option<u16> {
        if c.is_ascii() {
            Some(self.ascii[c as usize]).filter(|n| *n != NONE)
        } else {
            self.chars.iter().position(|x| *x == c).map(|i| i as u16)
        }
    }

    fn char_of(&self, n: u16) -> Option<char> {
        self.chars.get(usize::from(n)).copied()
    }
}

/// Whether `radix^len` reaches one million, the smallest domain NIST SP
/// 800-38G Rev. 1 allows for FF1.
pub(super) fn domain_ok(radix: u32, len: usize) -> bool {
    let mut size: u64 = 1;
    for _ in 0..len {
        size = size.saturating_mul(u64::from(radix));
        if size >= 1_000_000 {
            return true;
        }
    }
    false
}

/// Encrypts (or decrypts) the alphabet characters of `s` between the kept
/// ends; other characters (separators) stay in place.
pub(super) fn ff1_transform<C>(
    ff: &FF1<C>,
    tweak: &[u8],
    alphabet: &Alphabet,
    s: &str,
    keep_first: usize,
    keep_last: usize,
    decrypt: bool,
) -> Option<String>
where
    C: aes::cipher::BlockCipher + aes::cipher::BlockEncrypt + Clone,
{
    let n = s.chars().count();
    if n < keep_first + keep_last {
        return None;
    }
    let middle = keep_first..n - keep_last;
    let numerals: Vec<u16> = s
        .chars()
        .enumerate()
        .filter(|(i, _)| middle.contains(i))
        .filter_map(|(_, c)| alphabet.numeral(c))
        .collect();
    if !domain_ok(alphabet.radix(), numerals.len()) {
        return None;
    }
    let ns = FlexibleNumeralString::from(numerals);
    let out = if decrypt {
        ff.decrypt(tweak, &ns)
    } else {
        ff.encrypt(tweak, &ns)
    }
    .ok()?;
    let out: Vec<u16> = out.into();
    let mut next = out.into_iter();
    let mut result = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        if middle.contains(&i) && alphabet.numeral(c).is_some() {
            result.push(alphabet.char_of(next.next()?)?);
        } else {
            result.push(c);
        }
    }
    Some(result)
}

/// `fpe(key, alphabet, keep_first, keep_last)`: FF1 with AES-256 and an
/// empty tweak, so equal inputs give equal outputs (joins keep working).
pub(super) struct Fpe {
    ff: FF1<Aes256>,
    alphabet: Alphabet,
    keep_first: usize,
    keep_last: usize,
}

impl Fpe {
    pub(super) fn build(a: &Args, keys: &KeyRing) -> Result<Fpe, MaskError> {
        let key = a.key("key", keys)?;
        let alphabet = Alphabet::new(a.string("alphabet")?).map_err(|e| a.bad("alphabet", &e))?;
        let ff = FF1::<Aes256>::new(&derive_key(key, "fpe"), alphabet.radix())
            .map_err(|e| a.bad("alphabet", &e.to_string()))?;
        Ok(Fpe {
            ff,
            alphabet,
            keep_first: a.count("keep_first")?,
            keep_last: a.count("keep_last")?,
        })
    }

    /// `None` when the middle part is a domain below one million values.
    pub(super) fn encrypt(&self, s: &str) -> Option<String> {
        ff1_transform(
            &self.ff,
            &[],
            &self.alphabet,
            s,
            self.keep_first,
            self.keep_last,
            false,
        )
    }

    pub(super) fn decrypt(&self, s: &str) -> Option<String> {
        ff1_transform(
            &self.ff,
            &[],
            &self.alphabet,
            s,
            self.keep_first,
            self.keep_last,
            true,
        )
    }
}
