//! Unit and property tests of the mask catalogue: the bytes a client would
//! receive for known inputs, and the errors a DBA would see.

use super::detect::{self, Confidence, Kind as Det};
use super::*;
use proptest::prelude::*;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
const OTHER_KEY: &[u8] = b"fedcba9876543210fedcba9876543210";

fn ring() -> KeyRing {
    let mut k = KeyRing::new();
    k.insert("pii", KEY.to_vec());
    k.insert("other", OTHER_KEY.to_vec());
    k.insert("short", b"abc".to_vec());
    k
}

fn s(v: &str) -> ArgValue {
    ArgValue::Str(v.to_string())
}

fn args(pairs: &[(&str, ArgValue)]) -> MaskArgs {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn mask(name: &str, pairs: &[(&str, ArgValue)]) -> Mask {
    match build(name, &args(pairs), &ring()) {
        Ok(m) => m,
        Err(e) => panic!("build {name}: {e}"),
    }
}

fn err(name: &str, pairs: &[(&str, ArgValue)]) -> MaskError {
    match build(name, &args(pairs), &ring()) {
        Ok(m) => panic!("{m:?} should not build"),
        Err(e) => e,
    }
}

/// The text a client receives for a text-format `text` value.
fn text(m: &Mask, v: &str) -> String {
    typed(m, v, oid::TEXT)
}

fn typed(m: &Mask, v: &str, type_oid: u32) -> String {
    let out = m.apply(Some(v.as_bytes()), type_oid, WireFormat::Text);
    String::from_utf8(out.unwrap().unwrap()).unwrap()
}

fn binary(m: &Mask, v: &[u8], type_oid: u32) -> Vec<u8> {
    m.apply(Some(v), type_oid, WireFormat::Binary)
        .unwrap()
        .unwrap()
}

// ---------------------------------------------------------------- redact etc.

#[test]
fn redact_gives_a_fixed_value_of_each_type() {
    let m = mask("redact", &[]);
    assert_eq!(text(&m, "张三"), "****");
    assert_eq!(typed(&m, "42", oid::INT4), "0");
    assert_eq!(typed(&m, "1985-10-21", oid::DATE), "2000-01-01");
    assert_eq!(typed(&m, "t", oid::BOOL), "f");
    assert_eq!(binary(&m, &42i32.to_be_bytes(), oid::INT4), vec![0; 4]);
    assert_eq!(binary(&m, &42i64.to_be_bytes(), oid::INT8), vec![0; 8]);
    assert_eq!(binary(&m, "张三".as_bytes(), oid::VARCHAR), b"****");
    assert_eq!(binary(&m, &[1, 2, 3], oid::BYTEA), Vec::<u8>::new());
    assert_eq!(binary(&m, b"\x01{\"a\":1}", oid::JSONB), b"\x01\"****\"");
    // numeric zero: no digits, weight 0, positive, scale 0
    assert_eq!(
        binary(&m, &[0, 1, 0, 0, 0, 0, 0, 0, 0, 42], oid::NUMERIC),
        vec![0; 8]
    );
    assert_eq!(m.apply(None, oid::TEXT, WireFormat::Text), Ok(None));
}

#[test]
fn null_and_constant() {
    let m = mask("null", &[]);
    assert_eq!(m.apply(Some(b"x"), oid::UUID, WireFormat::Binary), Ok(None));
    assert!(m.accepts_type("anything_at_all"));

    let c = mask("constant", &[("value", s("hidden"))]);
    assert_eq!(text(&c, "secret"), "hidden");
    assert!(c.accepts_type("varchar"));
    assert!(!c.accepts_type("int4"), "`hidden` is no int4");
    assert!(c.apply(Some(b"1"), oid::INT4, WireFormat::Text).is_err());

    let n = mask("constant", &[("value", ArgValue::Int(7))]);
    assert!(n.accepts_type("int2") && n.accepts_type("numeric"));
    assert_eq!(
        binary(&n, &99i32.to_be_bytes(), oid::INT4),
        7i32.to_be_bytes()
    );
    assert_eq!(
        binary(&n, &[0; 8], oid::NUMERIC),
        [0, 1, 0, 0, 0, 0, 0, 0, 0, 7]
    );
    let b = mask("constant", &[("value", ArgValue::Bool(false))]);
    assert_eq!(typed(&b, "t", oid::BOOL), "f");
}

// ---------------------------------------------------------------- keep

#[test]
fn keep_first_and_last() {
    let m = mask(
        "keep",
        &[("first", ArgValue::Int(1)), ("last", ArgValue::Int(3))],
    );
    assert_eq!(text(&m, "abcdefgh"), "a****fgh");
    assert_eq!(text(&m, "张三丰你好啊"), "张**你好啊");
    assert_eq!(text(&m, ""), "");
    // not longer than first+last: nothing could be hidden, so all is filled
    assert_eq!(text(&m, "abcd"), "****");
    assert_eq!(text(&m, "ab"), "**");
    let h = mask(
        "keep",
        &[
            ("first", ArgValue::Int(0)),
            ("last", ArgValue::Int(2)),
            ("fill", s("#")),
        ],
    );
    assert_eq!(text(&h, "１２３４５"), "###４５");
    assert!(matches!(
        err("keep", &[("first", ArgValue::Int(0)), ("last", ArgValue::Int(2)), ("fill", s("##"))]),
        MaskError::BadArgument { argument, .. } if argument == "fill"
    ));
    assert!(matches!(
        err("keep", &[("first", ArgValue::Int(-1)), ("last", ArgValue::Int(2))]),
        MaskError::BadArgument { argument, .. } if argument == "first"
    ));
}

// ---------------------------------------------------------------- bank card

#[test]
fn bank_card_keeps_bin_and_last_four() {
    let m = mask("bank_card", &[]);
    assert_eq!(text(&m, "6222021234567890128"), "622202*********0128");
    assert_eq!(
        text(&m, "6222 0212 3456 7890 128"),
        "6222 02** **** ***0 128"
    );
    assert_eq!(text(&m, "4111-1111-1111-1111"), "4111-11**-****-1111");
    assert_eq!(
        text(&m, "６２２２０２１２３４５６７８９０"),
        "６２２２０２******７８９０"
    );
    assert_eq!(text(&m, "1234"), "****");
    assert_eq!(text(&m, ""), "");
    // 8-digit BIN only on 16+ digit PANs
    let eight = mask("bank_card", &[("first", ArgValue::Int(8))]);
    assert_eq!(text(&eight, "4111111111111111"), "41111111****1111");
    assert_eq!(text(&eight, "378282246310005"), "378282*****0005");
    assert_eq!(
        binary(&m, b"4111111111111111", oid::BPCHAR),
        b"411111******1111"
    );
}

#[test]
fn bank_card_refuses_more_than_bin_plus_four() {
    let e = err("bank_card", &[("first", ArgValue::Int(9))]);
    assert!(e.to_string().contains("PCI DSS 3.4.1"), "{e}");
    let e = err("bank_card", &[("last", ArgValue::Int(5))]);
    assert!(matches!(e, MaskError::BadArgument { ref argument, .. } if argument == "last"));
}

// ---------------------------------------------------------------- ID card

#[test]
fn cn_id_card_masks_birth_date() {
    let m = mask("cn_id_card", &[]);
    assert_eq!(text(&m, "11010519491231002X"), "110105********002X");
    assert_eq!(text(&m, "11010519491231002x"), "110105********002x");
    // 15-digit form: the last 3 are the sequence right after the birth date
    assert_eq!(text(&m, "110105491231002"), "110105******002");
    assert_eq!(text(&m, "123"), "***");
    assert!(matches!(
        err("cn_id_card", &[("first", ArgValue::Int(7))]),
        MaskError::BadArgument { argument, .. } if argument == "first"
    ));
}

// ---------------------------------------------------------------- mobile

#[test]
fn cn_mobile_keeps_three_and_four() {
    let m = mask("cn_mobile", &[]);
    assert_eq!(text(&m, "13812345678"), "138****5678");
    assert_eq!(text(&m, "+8613812345678"), "+86138****5678");
    assert_eq!(text(&m, "+86 138-1234-5678"), "+86 138-****-5678");
    assert_eq!(text(&m, "8613812345678"), "86138****5678");
    assert_eq!(text(&m, "008613812345678"), "0086138****5678");
    assert_eq!(text(&m, "１３８１２３４５６７８"), "１３８****５６７８");
    assert_eq!(text(&m, "1381234"), "*******");
}

// ---------------------------------------------------------------- names

#[test]
fn cn_name_keeps_surname() {
    let m = mask("cn_name", &[]);
    assert_eq!(text(&m, "张三丰"), "张**");
    assert_eq!(text(&m, "张三"), "张*");
    assert_eq!(text(&m, "欧阳娜娜"), "欧阳**");
    assert_eq!(text(&m, "司马懿"), "司马*");
    assert_eq!(text(&m, "诸葛亮"), "诸葛*");
    assert_eq!(text(&m, "上官婉儿"), "上官**");
    // two characters: 欧 is the surname, 阳 the given name
    assert_eq!(text(&m, "欧阳"), "欧*");
    assert_eq!(text(&m, "张"), "*");
    assert_eq!(text(&m, ""), "");
    assert_eq!(text(&m, "迪丽热巴·迪力木拉提"), "迪***·*****");
    assert_eq!(text(&m, "John Smith"), "J*** *****");
}

#[test]
fn email_keeps_first_character_and_domain() {
    let m = mask("email", &[]);
    assert_eq!(text(&m, "zhangsan@x.com"), "z*******@x.com");
    assert_eq!(text(&m, "a@x.com"), "*@x.com");
    assert_eq!(text(&m, "张三@例子.中国"), "张*@例子.中国");
    assert_eq!(text(&m, "not-an-email"), "************");
}

// ---------------------------------------------------------------- address

#[test]
fn address_keeps_administrative_levels() {
    let m = mask("address", &[]);
    assert_eq!(
        text(&m, "浙江省杭州市西湖区文三路90号"),
        "浙江省杭州市西湖区******"
    );
    assert_eq!(text(&m, "北京市朝阳区建国路88号"), "北京市朝阳区******");
    assert_eq!(
        text(&m, "广西壮族自治区南宁市青秀区民族大道100号"),
        "广西壮族自治区南宁市青秀区********"
    );
    assert_eq!(
        text(&m, "江苏省苏州市昆山市前进路1号"),
        "江苏省苏州市昆山市*****"
    );
    // 小区 is a housing estate, not a district
    assert_eq!(text(&m, "浙江省杭州市翠苑小区5幢"), "浙江省杭州市******");
    let city = mask("address", &[("keep", s("city"))]);
    assert_eq!(
        text(&city, "浙江省杭州市西湖区文三路90号"),
        "浙江省杭州市*********"
    );
    let prov = mask("address", &[("keep", s("province"))]);
    assert_eq!(
        text(&prov, "浙江省杭州市西湖区文三路90号"),
        "浙江省************"
    );
    // no level found: the first N characters, never more than half
    assert_eq!(text(&m, "文三路90号"), "文三路***");
    assert_eq!(text(&m, ""), "");
    assert!(matches!(
        err("address", &[("keep", s("street"))]),
        MaskError::BadArgument { argument, .. } if argument == "keep"
    ));
}

#[test]
fn regex_replaces_and_rejects_bad_patterns() {
    let m = mask(
        "regex",
        &[("pattern", s(r"\d{4}$")), ("replacement", s("****"))],
    );
    assert_eq!(text(&m, "A-1234"), "A-****");
    let e = err("regex", &[("pattern", s("(")), ("replacement", s(""))]);
    assert!(
        matches!(e, MaskError::BadArgument { ref argument, .. } if argument == "pattern"),
        "{e}"
    );
}

// ---------------------------------------------------------------- hash

#[test]
fn hash_is_keyed_and_deterministic() {
    let m = mask("hash", &[("key", s("pii")), ("prefix", s("tk_"))]);
    let a = text(&m, "13812345678");
    assert_eq!(a, text(&m, "13812345678"));
    assert_eq!(a.len(), 3 + 16);
    assert!(a.starts_with("tk_") && a[3..].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(a, text(&m, "13812345679"));
    let other = mask("hash", &[("key", s("other")), ("prefix", s("tk_"))]);
    assert_ne!(a, text(&other, "13812345678"));
    // binary text is the same bytes, so the same token (joins across formats)
    assert_eq!(binary(&m, b"13812345678", oid::VARCHAR), a.as_bytes());
    let b32 = mask(
        "hash",
        &[
            ("key", s("pii")),
            ("encoding", s("base32")),
            ("length", ArgValue::Int(52)),
        ],
    );
    let t = text(&b32, "x");
    assert_eq!(t.len(), 52);
    assert!(t
        .bytes()
        .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)));
}

#[test]
fn hash_key_errors_tell_how_to_fix() {
    let e = err("hash", &[("key", s("missing"))]);
    assert_eq!(
        e,
        MaskError::MissingKey {
            key: "missing".into()
        }
    );
    assert!(e.to_string().contains("PGVEIL_KEY_MISSING"), "{e}");
    let e = err("hash", &[("key", s("short"))]);
    assert!(e.to_string().contains("at least 16"), "{e}");
    assert!(
        matches!(err("hash", &[]), MaskError::MissingArgument { argument, .. } if argument == "key")
    );
    assert!(matches!(
        err("hash", &[("key", s("pii")), ("length", ArgValue::Int(4))]),
        MaskError::BadArgument { argument, .. } if argument == "length"
    ));
    assert!(matches!(
        err("hash", &[("key", ArgValue::Int(1))]),
        MaskError::BadArgument { argument, .. } if argument == "key"
    ));
}

// ---------------------------------------------------------------- fpe

/// NIST SP 800-38G FF1 samples 1-9 (FF1samples.pdf), through our alphabet
/// mapping and the `fpe` crate.
#[test]
fn fpe_matches_nist_ff1_samples() {
    use aes::{Aes128, Aes192, Aes256};
    use fpe::ff1::FF1;
    let k128 = data_encoding::HEXUPPER
        .decode(b"2B7E151628AED2A6ABF7158809CF4F3C")
        .unwrap();
    let k192 = data_encoding::HEXUPPER
        .decode(b"2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F")
        .unwrap();
    let k256 = data_encoding::HEXUPPER
        .decode(b"2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F7F036D6F04FC6A94")
        .unwrap();
    let digits = crypto::Alphabet::new("digits").unwrap();
    let base36 = crypto::Alphabet::new("0123456789abcdefghijklmnopqrstuvwxyz").unwrap();
    let t10: &[u8] = b"9876543210";
    let t36: &[u8] = &[
        0x37, 0x37, 0x37, 0x37, 0x70, 0x71, 0x72, 0x73, 0x37, 0x37, 0x37,
    ];
    let pt36 = "0123456789abcdefghi";
    macro_rules! check {
        ($c:ty, $key:expr, $alpha:expr, $tweak:expr, $pt:expr, $ct:expr) => {
            let ff = FF1::<$c>::new(&$key, $alpha.radix()).unwrap();
            let ct = crypto::ff1_transform(&ff, $tweak, &$alpha, $pt, 0, 0, false);
            assert_eq!(ct.as_deref(), Some($ct));
            let pt = crypto::ff1_transform(&ff, $tweak, &$alpha, $ct, 0, 0, true);
            assert_eq!(pt.as_deref(), Some($pt));
        };
    }
    check!(Aes128, k128, digits, &[], "0123456789", "2433477484");
    check!(Aes128, k128, digits, t10, "0123456789", "6124200773");
    check!(Aes128, k128, base36, t36, pt36, "a9tv40mll9kdu509eum");
    check!(Aes192, k192, digits, &[], "0123456789", "2830668132");
    check!(Aes192, k192, digits, t10, "0123456789", "2496655549");
    check!(Aes192, k192, base36, t36, pt36, "xbj3kv35jrawxv32ysr");
    check!(Aes256, k256, digits, &[], "0123456789", "6657667009");
    check!(Aes256, k256, digits, t10, "0123456789", "1001623463");
    check!(Aes256, k256, base36, t36, pt36, "xs8a0azh2avyalyzuwd");
}

#[test]
fn fpe_encrypts_the_middle_and_reveals_with_the_key() {
    let m = mask(
        "fpe",
        &[
            ("key", s("pii")),
            ("keep_first", ArgValue::Int(6)),
            ("keep_last", ArgValue::Int(4)),
        ],
    );
    let out = text(&m, "6222021234567890128");
    assert_eq!(out.len(), 19);
    assert!(out.starts_with("622202") && out.ends_with("0128"));
    assert!(out.bytes().all(|b| b.is_ascii_digit()));
    assert_ne!(&out[6..15], "123456789");
    assert_eq!(m.reveal(&out).as_deref(), Some("6222021234567890128"));
    // separators stay in place and are not encrypted
    let spaced = text(&m, "6222 0212 3456 7890 128");
    assert_eq!(spaced.len(), 23);
    assert_eq!(spaced.as_bytes()[4], b' ');
    assert_eq!(
        m.reveal(&spaced).as_deref(),
        Some("6222 0212 3456 7890 128")
    );
    // a middle part of 10^5 values is below NIST's one-million floor: fail closed
    assert!(m
        .apply(Some(b"622202123450128"), oid::TEXT, WireFormat::Text)
        .is_err());
    assert!(m
        .apply(Some(b"6222021234560128"), oid::TEXT, WireFormat::Text)
        .is_ok());
    assert!(matches!(
        err("fpe", &[("key", s("pii")), ("alphabet", s("aa"))]),
        MaskError::BadArgument { argument, .. } if argument == "alphabet"
    ));
}

// ---------------------------------------------------------------- dates

#[test]
fn date_trunc_text_and_binary() {
    let y = mask("date_trunc", &[]);
    let mo = mask("date_trunc", &[("unit", s("month"))]);
    assert_eq!(typed(&y, "1985-10-21", oid::DATE), "1985-01-01");
    assert_eq!(typed(&mo, "1985-10-21", oid::DATE), "1985-10-01");
    assert_eq!(
        typed(&y, "1985-10-21 13:45:12.5", oid::TIMESTAMP),
        "1985-01-01 00:00:00"
    );
    assert_eq!(
        typed(&mo, "1985-10-21 13:45:12+08", oid::TIMESTAMPTZ),
        "1985-10-01 00:00:00+08"
    );
    assert_eq!(
        typed(&mo, "1985-10-21 13:45:12-05:30", oid::TIMESTAMPTZ),
        "1985-10-01 00:00:00-05:30"
    );
    assert_eq!(typed(&y, "0044-03-15 BC", oid::DATE), "0044-01-01 BC");
    assert_eq!(typed(&y, "infinity", oid::DATE), "infinity");
    // binary date: days since 2000-01-01; 1985-10-21 is day -5185
    assert_eq!(
        binary(&y, &(-5185i32).to_be_bytes(), oid::DATE),
        (-5478i32).to_be_bytes()
    );
    assert_eq!(temporal::civil(-5478), (1985, 1, 1));
    let us = -5185i64 * 86_400_000_000 + 3_600_000_000;
    assert_eq!(
        binary(&mo, &us.to_be_bytes(), oid::TIMESTAMP),
        (-5205i64 * 86_400_000_000).to_be_bytes()
    );
    assert_eq!(temporal::civil(-5205), (1985, 10, 1));
    assert!(y
        .apply(Some(b"21/10/1985"), oid::DATE, WireFormat::Text)
        .is_err());
    assert!(y
        .apply(Some(&[0; 3]), oid::DATE, WireFormat::Binary)
        .is_err());
    assert!(!y.accepts_type("text"));
}

#[test]
fn date_shift_is_keyed_bounded_and_never_zero() {
    let m = mask(
        "date_shift",
        &[("key", s("pii")), ("max_days", ArgValue::Int(30))],
    );
    let out = typed(&m, "1985-10-21", oid::DATE);
    assert_eq!(out, typed(&m, "1985-10-21", oid::DATE));
    assert_ne!(out, "1985-10-21");
    // the same date in binary moves by the same number of days
    let bin = binary(&m, &(-5185i32).to_be_bytes(), oid::DATE);
    let days = i32::from_be_bytes(bin.try_into().unwrap());
    let (y, mo, d) = temporal::civil(i64::from(days));
    assert_eq!(out, format!("{y:04}-{mo:02}-{d:02}"));
    assert!((1..=30).contains(&(days + 5185).abs()));
    // time of day is kept
    let ts = typed(&m, "1985-10-21 13:45:12", oid::TIMESTAMP);
    assert!(ts.ends_with(" 13:45:12") && ts.starts_with(&out), "{ts}");
    assert!(matches!(
        err("date_shift", &[("key", s("pii")), ("max_days", ArgValue::Int(0))]),
        MaskError::BadArgument { argument, .. } if argument == "max_days"
    ));
}

// ---------------------------------------------------------------- numbers

#[test]
fn noise_stays_within_ratio_in_every_encoding() {
    let m = mask(
        "noise",
        &[("key", s("pii")), ("ratio", ArgValue::Float(0.1))],
    );
    let n: i64 = typed(&m, "10000", oid::INT4).parse().unwrap();
    assert!((9000..=11000).contains(&n) && n != 10000, "{n}");
    assert_eq!(typed(&m, "10000", oid::INT4), n.to_string());
    let b = binary(&m, &10000i32.to_be_bytes(), oid::INT4);
    assert_eq!(i32::from_be_bytes(b.try_into().unwrap()) as i64, n);
    let num = typed(&m, "1234.50", oid::NUMERIC);
    assert_eq!(num.split_once('.').unwrap().1.len(), 2, "scale kept: {num}");
    let f: f64 = typed(&m, "2.5", oid::FLOAT8).parse().unwrap();
    assert!((2.25..=2.75).contains(&f));
    assert_eq!(typed(&m, "NaN", oid::NUMERIC), "NaN");
    // int2 saturates instead of wrapping
    let big = mask("noise", &[("key", s("pii")), ("ratio", ArgValue::Int(1))]);
    let v: i64 = typed(&big, "32767", oid::INT2).parse().unwrap();
    assert!(v <= 32767);
    let other = mask(
        "noise",
        &[("key", s("other")), ("ratio", ArgValue::Float(0.1))],
    );
    assert_ne!(typed(&other, "10000", oid::INT4), n.to_string());
    assert!(!m.accepts_type("text"));
    assert!(matches!(
        err("noise", &[("key", s("pii")), ("ratio", ArgValue::Float(1.5))]),
        MaskError::BadArgument { argument, .. } if argument == "ratio"
    ));
}

#[test]
fn bucket_gives_lower_bounds_and_ranges() {
    let m = mask("bucket", &[("width", ArgValue::Int(10))]);
    assert_eq!(typed(&m, "37", oid::INT4), "30");
    assert_eq!(typed(&m, "-3", oid::INT4), "-10");
    assert_eq!(
        binary(&m, &37i64.to_be_bytes(), oid::INT8),
        30i64.to_be_bytes()
    );
    assert_eq!(typed(&m, "37.25", oid::NUMERIC), "30.00");
    assert_eq!(text(&m, "37"), "[30,40)");
    assert_eq!(text(&m, "n/a"), "****");
    // numeric binary 37.5 (ndigits 2, weight 0, +, dscale 1: 37, 5000) → 30.0
    let in_ = [0, 2, 0, 0, 0, 0, 0, 1, 0, 37, 0x13, 0x88];
    assert_eq!(
        binary(&m, &in_, oid::NUMERIC),
        [0, 1, 0, 0, 0, 0, 0, 1, 0, 30]
    );
    let half = mask("bucket", &[("width", ArgValue::Float(0.5))]);
    assert_eq!(text(&half, "1.7"), "[1.5,2.0)");
    assert_eq!(
        binary(&half, &1.7f64.to_be_bytes(), oid::FLOAT8),
        1.5f64.to_be_bytes()
    );
}

#[test]
fn numeric_binary_encoding_matches_postgres() {
    // 12345.6 → ndigits 3, weight 1, +, dscale 1, digits 1 2345 6000
    assert_eq!(
        numeric::text_to_binary("12345.6").unwrap(),
        [0, 3, 0, 1, 0, 0, 0, 1, 0, 1, 0x09, 0x29, 0x17, 0x70]
    );
    // -0.00001 → ndigits 1, weight -2, -, dscale 5, digits 1000
    assert_eq!(
        numeric::text_to_binary("-0.00001").unwrap(),
        [0, 1, 0xFF, 0xFE, 0x40, 0, 0, 5, 0x03, 0xE8]
    );
    assert_eq!(
        numeric::text_to_binary("0.00").unwrap(),
        [0, 0, 0, 0, 0, 0, 0, 2]
    );
    assert!(numeric::text_to_binary("1e5").is_none());
    assert!(numeric::text_to_binary("").is_none());
}

// ---------------------------------------------------------------- contract

#[test]
fn errors_suggest_the_closest_name() {
    let e = err("bankcard", &[]);
    assert_eq!(
        e,
        MaskError::UnknownFunction {
            name: "bankcard".into(),
            suggestion: Some("bank_card".into())
        }
    );
    assert!(
        matches!(err("mobile", &[]), MaskError::UnknownFunction { suggestion: Some(s), .. } if s == "cn_mobile")
    );
    assert!(matches!(
        err("zzzzzzzz", &[]),
        MaskError::UnknownFunction {
            suggestion: None,
            ..
        }
    ));
    let e = err(
        "keep",
        &[("frist", ArgValue::Int(1)), ("last", ArgValue::Int(1))],
    );
    assert_eq!(
        e,
        MaskError::UnknownArgument {
            function: "keep".into(),
            argument: "frist".into(),
            suggestion: Some("first".into())
        }
    );
    assert!(e.to_string().contains("did you mean `first`"));
    assert!(matches!(
        err("keep", &[("first", ArgValue::Int(1))]),
        MaskError::MissingArgument { argument, .. } if argument == "last"
    ));
    assert!(matches!(
        err("keep", &[("first", s("one")), ("last", ArgValue::Int(1))]),
        MaskError::BadArgument { reason, .. } if reason.contains("whole number")
    ));
}

#[test]
fn apply_fails_closed_on_types_and_bytes_it_cannot_handle() {
    let m = mask("cn_mobile", &[]);
    let e = m
        .apply(Some(&42i32.to_be_bytes()), oid::INT4, WireFormat::Binary)
        .unwrap_err();
    assert_eq!(
        e,
        MaskApplyError {
            function: "cn_mobile".into(),
            type_oid: oid::INT4,
            format: WireFormat::Binary
        }
    );
    assert!(
        m.apply(Some(&[0xff, 0xfe]), oid::TEXT, WireFormat::Text)
            .is_err(),
        "invalid UTF-8"
    );
    assert_eq!(
        m.apply(None, oid::INT4, WireFormat::Binary),
        Ok(None),
        "NULL stays NULL"
    );
    let r = mask("redact", &[]);
    assert!(
        r.apply(Some(b"(1,2)"), 600, WireFormat::Text).is_err(),
        "point is not in the catalogue"
    );
}

#[test]
fn every_catalogue_entry_builds_with_its_required_args_and_fits_its_types() {
    for info in catalogue() {
        let a: Vec<(&str, ArgValue)> = info
            .args
            .iter()
            .filter(|a| a.required)
            .map(|a| {
                let v = match (a.kind, a.name) {
                    (ArgKind::Key, _) => s("pii"),
                    (ArgKind::Int, _) => ArgValue::Int(1),
                    (ArgKind::Number, _) => ArgValue::Int(10),
                    (_, "pattern") => s("x"),
                    _ => s("x"),
                };
                (a.name, v)
            })
            .collect();
        let m = mask(info.name, &a);
        assert_eq!(m.name(), info.name);
        // constant's types depend on its value (`x` is only text)
        for t in info.types.iter().filter(|_| info.name != "constant") {
            assert!(m.accepts_type(t), "{} should accept {t}", info.name);
        }
        assert!(!info.doc.is_empty() && !info.example.is_empty());
    }
    assert_eq!(function_names().len(), 17);
    assert!(mask(
        "keep",
        &[("first", ArgValue::Int(1)), ("last", ArgValue::Int(1))]
    )
    .accepts_type("varchar"));
    assert!(!mask("cn_name", &[]).accepts_type("int4"));
    assert!(mask("redact", &[]).accepts_type("jsonb"));
}

#[test]
fn docs_list_every_function() {
    let doc = include_str!("../../docs/masks.md");
    for name in function_names() {
        assert!(
            doc.contains(&format!("`{name}")),
            "docs/masks.md misses {name}"
        );
    }
}

#[test]
fn key_ring_reads_files_and_names_env_vars() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pii_test_file"), b"0123456789abcdef\n").unwrap();
    let ring = KeyRing::load(&["pii_test_file".to_string()], Some(dir.path())).unwrap();
    assert_eq!(ring.get("pii_test_file"), Some(&b"0123456789abcdef"[..]));
    let e = KeyRing::load(&["nope-key".to_string()], Some(dir.path())).unwrap_err();
    assert!(e.to_string().contains("PGVEIL_KEY_NOPE_KEY"), "{e}");
    assert!(
        !format!("{ring:?}").contains("0123"),
        "Debug must not print key bytes"
    );
}

// ---------------------------------------------------------------- detectors

#[test]
fn detects_cn_id_card_with_mod_11_2() {
    assert_eq!(
        detect::check(Det::CnIdCard, "11010519491231002X"),
        Some(Confidence::High)
    );
    assert_eq!(
        detect::check(Det::CnIdCard, "11010519491231002x"),
        Some(Confidence::High)
    );
    assert_eq!(
        detect::check(Det::CnIdCard, "440304199001011233"),
        Some(Confidence::High)
    );
    assert_eq!(
        detect::check(Det::CnIdCard, "110101200002290018"),
        Some(Confidence::High),
        "leap day"
    );
    assert_eq!(
        detect::check(Det::CnIdCard, "110105194912310021"),
        None,
        "wrong check character"
    );
    assert_eq!(
        detect::check(Det::CnIdCard, "110101190002290011"),
        None,
        "1900 is not a leap year"
    );
    assert_eq!(
        detect::check(Det::CnIdCard, "11010519491331002X"),
        None,
        "month 13"
    );
    assert_eq!(
        detect::check(Det::CnIdCard, "１１０１０５１９４９１２３１００２X"),
        Some(Confidence::High)
    );
    assert_eq!(
        detect::check(Det::CnIdCard, "110105491231002"),
        Some(Confidence::Low)
    );
    assert_eq!(detect::check(Det::CnIdCard, "110105491331002"), None);
    assert_eq!(detect::check(Det::CnIdCard, ""), None);
}

#[test]
fn detects_cards_phones_and_codes() {
    assert!(detect::check(Det::BankCard, "6222021234567890128").is_some());
    assert!(detect::check(Det::BankCard, "4111 1111 1111 1111").is_some());
    assert!(detect::check(Det::BankCard, "378282246310005").is_some());
    assert!(
        detect::check(Det::BankCard, "4111111111111112").is_none(),
        "Luhn"
    );
    assert!(
        detect::check(Det::BankCard, "411111111111").is_none(),
        "too short"
    );
    assert!(detect::check(Det::CnMobile, "13812345678").is_some());
    assert!(detect::check(Det::CnMobile, "+86 138 1234 5678").is_some());
    assert!(detect::check(Det::CnMobile, "8613812345678").is_some());
    assert!(detect::check(Det::CnMobile, "12812345678").is_none());
    assert!(detect::check(Det::CnMobile, "1381234567").is_none());
    assert!(detect::check(Det::CnUscc, "91350100M000100Y43").is_some());
    assert!(detect::check(Det::CnUscc, "91350100M000100Y44").is_none());
    assert!(
        detect::check(Det::CnUscc, "91350100I000100Y43").is_none(),
        "I is not in the set"
    );
    assert!(detect::check(Det::Iban, "GB82 WEST 1234 5698 7654 32").is_some());
    assert!(detect::check(Det::Iban, "GB82WEST12345698765433").is_none());
    assert!(detect::check(Det::UsSsn, "123-45-6789").is_some());
    assert!(detect::check(Det::UsSsn, "666-45-6789").is_none());
    assert!(detect::check(Det::UsSsn, "123-00-6789").is_none());
    assert!(detect::check(Det::Email, "zhangsan@example.com").is_some());
    assert!(detect::check(Det::Email, "zhangsan@localhost").is_none());
    assert!(detect::check(Det::Email, "a..b@x.com").is_none());
    assert!(detect::check(Det::Ipv4, "192.168.0.1").is_some());
    assert!(detect::check(Det::Ipv4, "256.1.1.1").is_none());
    assert!(detect::check(Det::Ipv6, "2001:db8::1").is_some());
    assert!(detect::check(Det::Ipv6, "2001:db8::g").is_none());
    let found = detect::detect("11010519491231002X");
    assert_eq!(found.first(), Some(&(Det::CnIdCard, Confidence::High)));
}

#[test]
fn column_names_hint_at_secrets() {
    assert_eq!(detect::secret_column_hint("password"), Some("password"));
    assert_eq!(detect::secret_column_hint("login_pwd"), Some("pwd"));
    assert_eq!(detect::secret_column_hint("cardCvv"), Some("cvv"));
    assert_eq!(detect::secret_column_hint("PIN"), Some("pin"));
    assert_eq!(detect::secret_column_hint("track2_data"), Some("track2"));
    assert_eq!(detect::secret_column_hint("交易密码"), Some("密码"));
    assert_eq!(detect::secret_column_hint("短信验证码"), Some("验证码"));
    assert_eq!(detect::secret_column_hint("shipping_address"), None);
    assert_eq!(detect::secret_column_hint("spinner"), None);
    assert_eq!(detect::secret_column_hint("customer_name"), None);
}

// ---------------------------------------------------------------- properties

proptest! {
    #[test]
    fn keep_never_shows_the_hidden_part(v in "[^*]{0,24}", first in 0usize..5, last in 0usize..5) {
        let m = mask("keep", &[("first", ArgValue::Int(first as i64)), ("last", ArgValue::Int(last as i64))]);
        let out = text(&m, &v);
        let chars: Vec<char> = v.chars().collect();
        let outc: Vec<char> = out.chars().collect();
        prop_assert_eq!(outc.len(), chars.len());
        let n = chars.len();
        if n > first + last {
            prop_assert_eq!(&outc[..first], &chars[..first]);
            prop_assert_eq!(&outc[n - last..], &chars[n - last..]);
            prop_assert!(outc[first..n - last].iter().all(|c| *c == '*'));
            let hidden: String = chars[first..n - last].iter().collect();
            if hidden.chars().count() > first.max(last) {
                prop_assert!(!out.contains(&hidden));
            }
        } else {
            prop_assert!(outc.iter().all(|c| *c == '*'));
        }
    }

    #[test]
    fn bank_card_hides_all_but_bin_and_last_four(pan in "[0-9]{13,19}") {
        let out = text(&mask("bank_card", &[]), &pan);
        prop_assert_eq!(out.len(), pan.len());
        prop_assert_eq!(&out[..6], &pan[..6]);
        prop_assert_eq!(&out[pan.len() - 4..], &pan[pan.len() - 4..]);
        prop_assert!(out[6..pan.len() - 4].bytes().all(|b| b == b'*'));
        let hidden = &pan[6..pan.len() - 4];
        // a hidden part no longer than the kept BIN could equal it by chance
        if hidden.len() > 6 {
            prop_assert!(!out.contains(hidden));
        }
    }

    #[test]
    fn id_and_mobile_hide_their_middle(id in "[0-9]{17}[0-9X]", phone in "1[3-9][0-9]{9}") {
        let out = text(&mask("cn_id_card", &[]), &id);
        prop_assert_eq!(&out[..6], &id[..6]);
        prop_assert_eq!(&out[6..14], "********");
        prop_assert_eq!(&out[14..], &id[14..]);
        let out = text(&mask("cn_mobile", &[]), &phone);
        prop_assert_eq!(&out[..3], &phone[..3]);
        prop_assert_eq!(&out[3..7], "****");
        prop_assert_eq!(&out[7..], &phone[7..]);
    }

    #[test]
    fn cn_name_keeps_length_and_at_most_the_surname(name in "[\u{4e00}-\u{9fa5}]{2,4}") {
        let out = text(&mask("cn_name", &[]), &name);
        let (a, b): (Vec<char>, Vec<char>) = (name.chars().collect(), out.chars().collect());
        prop_assert_eq!(a.len(), b.len());
        prop_assert!(b.iter().skip(2).all(|c| *c == '*'));
        prop_assert_eq!(b[a.len() - 1], '*');
    }

    #[test]
    fn email_hides_the_local_part(local in "[a-z0-9]{2,20}", domain in "[a-z]{1,10}\\.com") {
        let v = format!("{local}@{domain}");
        let out = text(&mask("email", &[]), &v);
        prop_assert_eq!(out.len(), v.len());
        let tail = format!("@{domain}");
        prop_assert!(out.ends_with(&tail));
        prop_assert!(out[1..local.len()].bytes().all(|b| b == b'*'));
    }

    #[test]
    fn fpe_round_trips_keeps_format_and_depends_on_the_key(v in "[0-9]{12,19}") {
        let spec = |k: &str| mask("fpe", &[("key", s(k)), ("keep_first", ArgValue::Int(2)), ("keep_last", ArgValue::Int(2))]);
        let (m, other) = (spec("pii"), spec("other"));
        let out = text(&m, &v);
        prop_assert_eq!(out.len(), v.len());
        prop_assert!(out.bytes().all(|b| b.is_ascii_digit()));
        prop_assert_eq!(&out[..2], &v[..2]);
        prop_assert_eq!(&out[v.len() - 2..], &v[v.len() - 2..]);
        prop_assert_eq!(&out, &text(&m, &v));
        prop_assert_eq!(m.reveal(&out), Some(v.clone()));
        prop_assert_ne!(out, text(&other, &v));
    }

    #[test]
    fn hash_is_deterministic_and_differs_across_keys(v in ".{0,40}") {
        let a = mask("hash", &[("key", s("pii"))]);
        let b = mask("hash", &[("key", s("other"))]);
        prop_assert_eq!(text(&a, &v), text(&a, &v));
        prop_assert_ne!(text(&a, &v), text(&b, &v));
    }

    #[test]
    fn date_shift_agrees_across_formats(days in -100_000i32..100_000) {
        let m = mask("date_shift", &[("key", s("pii")), ("max_days", ArgValue::Int(365))]);
        let (y, mo, d) = temporal::civil(i64::from(days));
        let t = typed(&m, &format!("{y:04}-{mo:02}-{d:02}"), oid::DATE);
        let b = binary(&m, &days.to_be_bytes(), oid::DATE);
        let shifted = i32::from_be_bytes(b.try_into().unwrap());
        let (y2, m2, d2) = temporal::civil(i64::from(shifted));
        prop_assert_eq!(t, format!("{y2:04}-{m2:02}-{d2:02}"));
        prop_assert!((1..=365).contains(&(shifted - days).abs()));
    }

    #[test]
    fn numeric_binary_round_trips(int in 0u64..1_000_000_000_000, frac in "[0-9]{0,8}", neg: bool) {
        let v = if frac.is_empty() { format!("{}{int}", if neg { "-" } else { "" }) } else { format!("{}{int}.{frac}", if neg { "-" } else { "" }) };
        let m = mask("bucket", &[("width", ArgValue::Float(1e-9))]);
        // bucket with a tiny width keeps the value at the value's scale
        let b = numeric::text_to_binary(&v).unwrap();
        let out = binary(&m, &b, oid::NUMERIC);
        prop_assert_eq!(&out[6..8], &b[6..8], "dscale kept");
    }
}

#[test]
fn masks_are_shared_across_sessions() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<Mask>();
    shareable::<KeyRing>();
    let m = mask("hash", &[("key", s("pii"))]);
    assert!(
        !format!("{m:?}").contains("0123"),
        "Debug names the mask, not its key"
    );
}

#[test]
fn bpchar_padding_is_kept_out_of_the_mask() {
    let k = mask(
        "keep",
        &[("first", ArgValue::Int(1)), ("last", ArgValue::Int(1))],
    );
    assert_eq!(typed(&k, "abcd    ", oid::BPCHAR), "a**d    ");
    assert_eq!(typed(&k, "abcd    ", oid::TEXT), "a****** ");
    let h = mask("hash", &[("key", s("pii"))]);
    assert_eq!(typed(&h, "abc  ", oid::BPCHAR), text(&h, "abc"));
}

#[test]
fn shorter_tokens_are_prefixes_of_longer_ones() {
    for (enc, max) in [("hex", 64), ("base32", 52)] {
        let long = mask(
            "hash",
            &[
                ("key", s("pii")),
                ("encoding", s(enc)),
                ("length", ArgValue::Int(max)),
            ],
        );
        let full = text(&long, "13812345678");
        for len in [8, 9, 10, 13, 17, 33, max] {
            let m = mask(
                "hash",
                &[
                    ("key", s("pii")),
                    ("encoding", s(enc)),
                    ("length", ArgValue::Int(len)),
                ],
            );
            assert_eq!(text(&m, "13812345678"), full[..len as usize], "{enc} {len}");
        }
    }
}

// ------------------------------------------------- hot path equals reference

/// `apply_into` (the hot path) must write exactly what `apply` (the
/// reference) returns, fail where it fails, and leave the buffer untouched
/// when it fails or the value becomes NULL.
fn assert_fast_equals_reference(m: &Mask, v: &[u8], type_oid: u32, format: WireFormat) {
    let mut out = bytes::BytesMut::from(&b"~"[..]);
    let fast = m.apply_into(v, type_oid, format, &mut out);
    match m.apply(Some(v), type_oid, format) {
        Ok(Some(expected)) => {
            assert_eq!(fast, Ok(true), "{m:?} {v:?} {type_oid} {format:?}");
            assert_eq!(
                &out[1..],
                &expected[..],
                "{m:?} {v:?} {type_oid} {format:?}"
            );
        }
        Ok(None) => {
            assert_eq!(fast, Ok(false), "{m:?} {v:?}");
            assert_eq!(&out[..], b"~");
        }
        Err(e) => {
            assert_eq!(fast, Err(e), "{m:?} {v:?} {type_oid} {format:?}");
            assert_eq!(&out[..], b"~");
        }
    }
}

fn text_masks() -> Vec<Mask> {
    vec![
        mask("cn_name", &[]),
        mask("cn_id_card", &[]),
        mask(
            "cn_id_card",
            &[("first", ArgValue::Int(2)), ("last", ArgValue::Int(1))],
        ),
        mask("cn_mobile", &[]),
        mask("bank_card", &[]),
        mask("bank_card", &[("first", ArgValue::Int(8))]),
        mask("email", &[]),
        mask(
            "keep",
            &[("first", ArgValue::Int(1)), ("last", ArgValue::Int(3))],
        ),
        mask(
            "keep",
            &[
                ("first", ArgValue::Int(0)),
                ("last", ArgValue::Int(2)),
                ("fill", s("＊")),
            ],
        ),
        mask("redact", &[]),
        mask("null", &[]),
        mask("constant", &[("value", s("x"))]),
        mask("hash", &[("key", s("pii"))]),
        mask("bucket", &[("width", ArgValue::Int(10))]),
    ]
}

#[test]
fn hot_path_handles_the_edge_values_like_the_reference() {
    let texts = [
        "",
        "王",
        "王伟",
        "王小明",
        "欧阳娜娜",
        "司马 懿",
        "J. R. R. Tolkien",
        "a@b",
        "@x.cn",
        "no-at-sign",
        "李@例子.中国",
        "11010519491231002X",
        "110105491231002",
        "6222 0212 3456 7890 128",
        "+8613812345678",
        "008613812345678",
        "8613812345678",
        "138-1234-5678",
        "１３８１２３４５６７８",
        "  ",
        "\u{3000}12",
        "x\u{FF0D}y",
        "A",
        "Li",
        "J.R-o'Neil",
        "ab\t  ",
        "a@b@c",
        "@",
        " @x",
        "0086138123456789",
        "86138123456",
    ];
    for m in text_masks() {
        for t in texts {
            for o in [oid::TEXT, oid::VARCHAR, oid::BPCHAR, oid::INT4] {
                assert_fast_equals_reference(&m, t.as_bytes(), o, WireFormat::Text);
                assert_fast_equals_reference(
                    &m,
                    format!("{t}   ").as_bytes(),
                    o,
                    WireFormat::Binary,
                );
            }
        }
        assert_fast_equals_reference(&m, b"\xff\xfe", oid::TEXT, WireFormat::Text);
    }
    let bucket = mask("bucket", &[("width", ArgValue::Int(10_000))]);
    let fine = mask("bucket", &[("width", ArgValue::Float(0.1))]);
    let wide = mask("bucket", &[("width", ArgValue::Int(1 << 22))]);
    let numbers = [
        "0",
        "-0",
        "-0.00",
        "0.00",
        "12345.67",
        "-12345.67",
        "20000.00",
        "-20000.00",
        "-20000.01",
        "9999999999.99",
        "99999999999999.99",
        "1e5",
        "+5",
        "5.",
        ".5",
        "NaN",
        "Infinity",
        "-",
        "",
        "12a",
        "123456789012",
        "-9223372036854775808",
    ];
    for m in [&bucket, &fine, &wide] {
        for n in numbers {
            for o in [
                oid::NUMERIC,
                oid::INT2,
                oid::INT4,
                oid::INT8,
                oid::FLOAT8,
                oid::TEXT,
            ] {
                assert_fast_equals_reference(m, n.as_bytes(), o, WireFormat::Text);
            }
            if let Some(b) = numeric::text_to_binary(n.trim_start_matches('+')) {
                assert_fast_equals_reference(m, &b, oid::NUMERIC, WireFormat::Binary);
            }
        }
        for n in [
            0i64,
            1,
            -1,
            9_999,
            -10_001,
            32_767,
            -32_768,
            i64::from(i32::MAX),
            i64::from(i32::MIN),
            i64::MAX,
            i64::MIN,
        ] {
            assert_fast_equals_reference(
                m,
                &(n as i16).to_be_bytes(),
                oid::INT2,
                WireFormat::Binary,
            );
            assert_fast_equals_reference(
                m,
                &(n as i32).to_be_bytes(),
                oid::INT4,
                WireFormat::Binary,
            );
            assert_fast_equals_reference(m, &n.to_be_bytes(), oid::INT8, WireFormat::Binary);
        }
        // NaN, +Infinity, malformed digit, wrong length.
        for b in [
            vec![0, 0, 0, 0, 0xC0, 0, 0, 0],
            vec![0, 0, 0, 0, 0xD0, 0, 0, 0],
            vec![0, 1, 0, 0, 0, 0, 0, 0, 0x27, 0x10],
            vec![0, 1, 0, 0, 0, 0, 0, 0],
            vec![0, 1, 0, 3, 0, 0, 0, 0, 0, 7],
        ] {
            assert_fast_equals_reference(m, &b, oid::NUMERIC, WireFormat::Binary);
        }
    }
    for unit in ["year", "month", "day"] {
        let m = mask("date_trunc", &[("unit", s(unit))]);
        for d in [
            "1985-10-21",
            "2000-02-29",
            "0044-03-15 BC",
            "infinity",
            "-infinity",
            "12345-01-01",
            "1985-13-01",
            "85-10-21",
            "1985-10-21 13:45:12.5+08",
            "1985-10-21 13:45:12-03:30",
            "1985-10-21 13:45:12",
            "1985-10-21 13:45:12+05:30:15 BC",
            "1985-10-21 ",
            "",
            "0000-01-01",
            "0001-01-01",
            "9999-12-31",
            "1900-02-29",
            "2024-02-29",
            "2023-02-29",
            "2024-00-10",
            "1985-10-00",
            "1985-10-32",
            "1985/10/21",
            "1985-1a-21",
        ] {
            for o in [oid::DATE, oid::TIMESTAMP, oid::TIMESTAMPTZ, oid::TEXT] {
                assert_fast_equals_reference(&m, d.as_bytes(), o, WireFormat::Text);
            }
        }
        for days in [0i32, -5185, 12_000, i32::MAX, i32::MIN, -2_451_545] {
            assert_fast_equals_reference(&m, &days.to_be_bytes(), oid::DATE, WireFormat::Binary);
        }
        for us in [
            0i64,
            1,
            -1,
            499_000_000_000_000,
            i64::MAX,
            i64::MIN,
            i64::MAX - 1,
        ] {
            assert_fast_equals_reference(
                &m,
                &us.to_be_bytes(),
                oid::TIMESTAMPTZ,
                WireFormat::Binary,
            );
        }
        assert_fast_equals_reference(&m, &[1, 2, 3], oid::DATE, WireFormat::Binary);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn hot_path_text_masks_equal_reference(
        v in prop_oneof![
            "[0-9X +-]{0,22}",
            "[a-z.@]{0,16}",
            "[\u{4e00}-\u{4e10}·欧阳司马 ]{0,5}",
            "\\PC{0,10}",
        ],
        pick in 0usize..14,
        bpchar: bool,
    ) {
        let o = if bpchar { oid::BPCHAR } else { oid::TEXT };
        assert_fast_equals_reference(&text_masks()[pick], v.as_bytes(), o, WireFormat::Text);
    }

    #[test]
    fn hot_path_numbers_equal_reference(
        int in 0u64..100_000_000_000_000,
        frac in "[0-9]{0,4}",
        neg: bool,
        width in prop_oneof![Just(1i64), Just(7), Just(10), Just(10_000), Just(1 << 20), Just(3 << 20)],
    ) {
        let m = mask("bucket", &[("width", ArgValue::Int(width))]);
        let mut t = format!("{}{int}", if neg { "-" } else { "" });
        if !frac.is_empty() {
            t.push('.');
            t.push_str(&frac);
        }
        assert_fast_equals_reference(&m, t.as_bytes(), oid::NUMERIC, WireFormat::Text);
        if let Some(b) = numeric::text_to_binary(&t) {
            assert_fast_equals_reference(&m, &b, oid::NUMERIC, WireFormat::Binary);
        }
        let n = if neg { -(int as i64) } else { int as i64 };
        assert_fast_equals_reference(&m, n.to_string().as_bytes(), oid::INT8, WireFormat::Text);
        assert_fast_equals_reference(&m, &n.to_be_bytes(), oid::INT8, WireFormat::Binary);
        assert_fast_equals_reference(&m, &(n as i32).to_be_bytes(), oid::INT4, WireFormat::Binary);
        assert_fast_equals_reference(&m, (n as i32).to_string().as_bytes(), oid::INT4, WireFormat::Text);
    }

    #[test]
    fn hot_path_date_shapes_equal_reference(
        d in "[0-9]{4}-[0-9]{2}-[0-9]{2}( BC| 01:02:03\\+08)?",
        unit in 0usize..3,
    ) {
        let m = mask("date_trunc", &[("unit", s(["year", "month", "day"][unit]))]);
        for o in [oid::DATE, oid::TIMESTAMPTZ] {
            assert_fast_equals_reference(&m, d.as_bytes(), o, WireFormat::Text);
        }
    }

    #[test]
    fn hot_path_dates_equal_reference(days in -800_000i64..3_000_000, us in 0i64..86_400_000_000, unit in 0usize..3) {
        let m = mask("date_trunc", &[("unit", s(["year", "month", "day"][unit]))]);
        assert_fast_equals_reference(&m, &(days as i32).to_be_bytes(), oid::DATE, WireFormat::Binary);
        let ts = days * 86_400_000_000 + us;
        assert_fast_equals_reference(&m, &ts.to_be_bytes(), oid::TIMESTAMP, WireFormat::Binary);
        let (y, mo, d) = temporal::civil(days);
        let text = if y > 0 { format!("{y:04}-{mo:02}-{d:02}") } else { format!("{:04}-{mo:02}-{d:02} BC", 1 - y) };
        assert_fast_equals_reference(&m, text.as_bytes(), oid::DATE, WireFormat::Text);
        let tz = format!("{} 12:34:56.789+08", text.trim_end_matches(" BC"));
        assert_fast_equals_reference(&m, tz.as_bytes(), oid::TIMESTAMPTZ, WireFormat::Text);
    }
}
