package odscrypt

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

const testConnStr = "host=db.example;port=5432;username=ods_user;password=S3cr3t!pw;database=EdFi_Ods_255901"

func testKeyBytes(seed byte) []byte {
	b := make([]byte, keySize)
	for i := range b {
		b[i] = seed + byte(i)*7
	}
	return b
}

func mustKey(t testing.TB, raw []byte) Key {
	t.Helper()
	k, err := ParseKey(base64.StdEncoding.EncodeToString(raw))
	if err != nil {
		t.Fatalf("ParseKey: %v", err)
	}
	return k
}

func TestRoundTrip(t *testing.T) {
	k := mustKey(t, testKeyBytes(1))
	tests := []struct {
		name, plaintext string
	}{
		{"empty", ""},
		{"ascii connection string", testConnStr},
		{"sqlserver connection string", "Server=sql;Database=EdFi_Ods;User Id=sa;Password=p;Encrypt=True"},
		{"unicode", "password=pässwörd€😀;database=ÉdFi_日本"},
		{"exactly 16 bytes", strings.Repeat("a", 16)},
		{"exactly 32 bytes", strings.Repeat("b", 32)},
		{"15 bytes", strings.Repeat("c", 15)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc, err := k.Encrypt(tt.plaintext)
			if err != nil {
				t.Fatalf("Encrypt: %v", err)
			}
			if !IsEncrypted(enc) {
				t.Errorf("IsEncrypted(Encrypt(...)) = false")
			}
			got, err := k.Decrypt(enc)
			if err != nil {
				t.Fatalf("Decrypt: %v", err)
			}
			if got != tt.plaintext {
				t.Errorf("round trip mismatch: got %q, want %q", got, tt.plaintext)
			}
		})
	}
}

func TestEncryptRandomIV(t *testing.T) {
	k := mustKey(t, testKeyBytes(1))
	a, err := k.Encrypt(testConnStr)
	if err != nil {
		t.Fatal(err)
	}
	b, err := k.Encrypt(testConnStr)
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatal("two encryptions of the same plaintext are identical")
	}
	if strings.SplitN(a, ".", 2)[0] == strings.SplitN(b, ".", 2)[0] {
		t.Fatal("two encryptions share an IV")
	}
}

// modifyPart decodes part i of value, applies f to its bytes and re-encodes.
func modifyPart(t *testing.T, value string, i int, f func([]byte) []byte) string {
	t.Helper()
	parts := strings.Split(value, ".")
	if len(parts) != 3 {
		t.Fatalf("value has %d parts", len(parts))
	}
	b, err := base64.StdEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatalf("decode part %d: %v", i, err)
	}
	parts[i] = base64.StdEncoding.EncodeToString(f(b))
	return strings.Join(parts, ".")
}

func flipBit(pos int) func([]byte) []byte {
	return func(b []byte) []byte {
		b[pos] ^= 0x01
		return b
	}
}

func TestDecryptTampered(t *testing.T) {
	k := mustKey(t, testKeyBytes(1))
	other := mustKey(t, testKeyBytes(2))
	enc, err := k.Encrypt(testConnStr)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		key   Key
		value string
	}{
		{"tampered HMAC first byte", k, modifyPart(t, enc, 2, flipBit(0))},
		{"tampered HMAC last byte", k, modifyPart(t, enc, 2, flipBit(31))},
		{"tampered ciphertext first block", k, modifyPart(t, enc, 1, flipBit(0))},
		{"tampered ciphertext last block", k, modifyPart(t, enc, 1, func(b []byte) []byte { b[len(b)-1] ^= 0x80; return b })},
		{"ciphertext truncated by a block", k, modifyPart(t, enc, 1, func(b []byte) []byte { return b[:len(b)-16] })},
		{"wrong key", other, enc},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.key.Decrypt(tt.value)
			if !errors.Is(err, ErrTampered) {
				t.Fatalf("Decrypt error = %v, want ErrTampered", err)
			}
			if got != "" {
				t.Errorf("Decrypt returned plaintext alongside error")
			}
			assertNoSecrets(t, err.Error(), testConnStr, testKeyBytes(1))
		})
	}
}

// The ODS/API's format computes the HMAC over the ciphertext only, so a
// modified IV cannot be reported as ErrTampered. What must hold is that the
// original plaintext is never returned: CBC makes the IV change the first
// block, which then fails padding or UTF-8, or decrypts to something else.
func TestDecryptTamperedIV(t *testing.T) {
	k := mustKey(t, testKeyBytes(1))
	for _, pt := range []string{"", "short", testConnStr} {
		enc, err := k.Encrypt(pt)
		if err != nil {
			t.Fatal(err)
		}
		for pos := range ivSize {
			tampered := modifyPart(t, enc, 0, flipBit(pos))
			got, err := k.Decrypt(tampered)
			if err == nil && got == pt {
				t.Errorf("plaintext len %d, IV byte %d flipped: Decrypt returned the original plaintext", len(pt), pos)
			}
			if err != nil && !errors.Is(err, ErrFormat) {
				t.Errorf("plaintext len %d, IV byte %d flipped: error %v, want ErrFormat or a different plaintext", len(pt), pos, err)
			}
		}
	}
}

func TestDecryptBadFormat(t *testing.T) {
	k := mustKey(t, testKeyBytes(1))
	enc, err := k.Encrypt(testConnStr)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(enc, ".")
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	tests := []struct {
		name, value string
	}{
		{"empty", ""},
		{"plaintext connection string", testConnStr},
		{"two parts", parts[0] + "." + parts[1]},
		{"four parts", enc + "." + parts[2]},
		{"trailing dot", enc + "."},
		{"non-base64 IV", "!!!!" + "." + parts[1] + "." + parts[2]},
		{"non-base64 ciphertext", parts[0] + ".@@@@." + parts[2]},
		{"non-base64 HMAC", parts[0] + "." + parts[1] + ".####"},
		{"unpadded base64", strings.TrimRight(parts[0], "=") + "." + parts[1] + "." + parts[2]},
		{"URL-safe alphabet", parts[0] + "." + parts[1] + "." + strings.NewReplacer("+", "-", "/", "_").Replace(b64(31)+"_-")},
		{"IV of 15 bytes", b64(15) + "." + parts[1] + "." + parts[2]},
		{"IV of 17 bytes", b64(17) + "." + parts[1] + "." + parts[2]},
		{"empty ciphertext", parts[0] + ".." + parts[2]},
		{"ciphertext not multiple of 16", parts[0] + "." + b64(17) + "." + parts[2]},
		{"ciphertext of 15 bytes", parts[0] + "." + b64(15) + "." + parts[2]},
		{"HMAC of 31 bytes", parts[0] + "." + parts[1] + "." + b64(31)},
		{"empty parts", ".."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if IsEncrypted(tt.value) {
				t.Errorf("IsEncrypted = true")
			}
			got, err := k.Decrypt(tt.value)
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("Decrypt error = %v, want ErrFormat", err)
			}
			if got != "" {
				t.Errorf("Decrypt returned plaintext alongside error")
			}
			assertNoSecrets(t, err.Error(), testConnStr, testKeyBytes(1))
		})
	}
}

// A value with a valid HMAC but bad padding can only come from a broken
// producer; it must still be rejected, as ErrFormat.
func TestDecryptBadPadding(t *testing.T) {
	raw := testKeyBytes(1)
	k := mustKey(t, raw)
	iv := bytes.Repeat([]byte{0x42}, ivSize)
	tests := []struct {
		name  string
		block []byte // 16 bytes of "plaintext" including the padding
	}{
		{"pad byte zero", append(bytes.Repeat([]byte{'a'}, 15), 0)},
		{"pad byte 17", append(bytes.Repeat([]byte{'a'}, 15), 17)},
		{"inconsistent pad bytes", append(bytes.Repeat([]byte{'a'}, 13), 3, 2, 3)},
		{"invalid UTF-8 plaintext", append([]byte{0xff, 0xfe}, bytes.Repeat([]byte{14}, 14)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			value := sealRaw(t, raw, iv, tt.block)
			if !IsEncrypted(value) {
				t.Fatal("IsEncrypted = false for a well-formed value")
			}
			if _, err := k.Decrypt(value); !errors.Is(err, ErrFormat) {
				t.Fatalf("Decrypt error = %v, want ErrFormat", err)
			}
		})
	}
}

// sealRaw CBC-encrypts already padded data and MACs it, independently of the
// package's code.
func sealRaw(t *testing.T, key, iv, padded []byte) string {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	ct := make([]byte, len(padded))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, padded)
	m := hmac.New(sha256.New, key)
	m.Write(ct)
	e := base64.StdEncoding
	return e.EncodeToString(iv) + "." + e.EncodeToString(ct) + "." + e.EncodeToString(m.Sum(nil))
}

func TestKnownAnswer(t *testing.T) {
	raw := testKeyBytes(9)
	k := mustKey(t, raw)
	iv := []byte("0123456789abcdef")
	tests := []struct {
		name, plaintext string
	}{
		{"empty", ""},
		{"connection string", testConnStr},
		{"exactly 16 bytes", "0123456789ABCDEF"},
		{"unicode", "Password=Grüße"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pad := 16 - len(tt.plaintext)%16
			padded := append([]byte(tt.plaintext), bytes.Repeat([]byte{byte(pad)}, pad)...)
			want := sealRaw(t, raw, iv, padded)

			got, err := k.encryptWithIV(ODSAPI, tt.plaintext, iv)
			if err != nil {
				t.Fatalf("encryptWithIV: %v", err)
			}
			if got != want {
				t.Fatalf("encryptWithIV =\n  %s\nwant\n  %s", got, want)
			}
			if dec, err := k.Decrypt(want); err != nil || dec != tt.plaintext {
				t.Fatalf("Decrypt(independent value) = %q, %v", dec, err)
			}
		})
	}

	// A fixed vector, so a change to the test helper cannot hide a change in
	// output. The key is bytes 0..31, the IV bytes 0..15.
	var key32, iv16 [32]byte
	for i := range key32 {
		key32[i] = byte(i)
		iv16[i] = byte(i)
	}
	k2 := mustKey(t, key32[:])
	got, err := k2.encryptWithIV(ODSAPI, "abc", iv16[:16])
	if err != nil {
		t.Fatal(err)
	}
	want := sealRaw(t, key32[:], iv16[:16], append([]byte("abc"), bytes.Repeat([]byte{13}, 13)...))
	if got != want {
		t.Fatalf("fixed vector = %s, want %s", got, want)
	}
	if !strings.HasPrefix(got, "AAECAwQFBgcICQoLDA0ODw==.") {
		t.Fatalf("IV not encoded as standard padded base64: %s", got)
	}
}

func TestParseKeyErrors(t *testing.T) {
	tests := []struct {
		name, input, wantIn string
	}{
		{"16 bytes", base64.StdEncoding.EncodeToString(testKeyBytes(3)[:16]), "16 bytes"},
		{"31 bytes", base64.StdEncoding.EncodeToString(testKeyBytes(3)[:31]), "31 bytes"},
		{"33 bytes", base64.StdEncoding.EncodeToString(append(testKeyBytes(3), 1)), "33 bytes"},
		{"empty", "", "0 bytes"},
		{"not base64", "this-is-not-base64!!-secretvalue", "base64"},
		{"unpadded", strings.TrimRight(base64.StdEncoding.EncodeToString(testKeyBytes(3)), "="), "base64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseKey(tt.input)
			if err == nil {
				t.Fatal("ParseKey succeeded")
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.wantIn) {
				t.Errorf("error %q does not mention %q", msg, tt.wantIn)
			}
			if tt.input != "" && strings.Contains(msg, tt.input) {
				t.Errorf("error echoes the input: %q", msg)
			}
			if strings.Contains(msg, "secretvalue") {
				t.Errorf("error leaks part of the input: %q", msg)
			}
		})
	}
	if _, err := ParseKey(" " + base64.StdEncoding.EncodeToString(testKeyBytes(3)) + "\n"); err != nil {
		t.Errorf("ParseKey with surrounding whitespace: %v", err)
	}
}

func TestKeyFormattingRedacted(t *testing.T) {
	raw := testKeyBytes(5)
	k := mustKey(t, raw)
	holder := struct{ K Key }{k}
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
		for _, arg := range []any{k, &k, holder} {
			out := fmt.Sprintf(format, arg)
			if !strings.Contains(out, "redacted") {
				t.Errorf("Sprintf(%q, %T) = %q, want it redacted", format, arg, out)
			}
			assertNoSecrets(t, out, "", raw)
		}
	}
	if got := k.String(); got != "odscrypt.Key(redacted)" {
		t.Errorf("String() = %q", got)
	}
	if got := k.GoString(); got != "odscrypt.Key(redacted)" {
		t.Errorf("GoString() = %q", got)
	}
}

func TestErrorsNeverContainSecrets(t *testing.T) {
	raw := testKeyBytes(1)
	k := mustKey(t, raw)
	var zero Key
	if _, err := zero.Encrypt(testConnStr); err == nil {
		t.Error("zero Key encrypted")
	} else {
		assertNoSecrets(t, err.Error(), testConnStr, raw)
	}
	if _, err := zero.Decrypt(testConnStr); err == nil {
		t.Error("zero Key decrypted")
	} else {
		assertNoSecrets(t, err.Error(), testConnStr, raw)
	}
	bad := testConnStr + "\xff"
	if _, err := k.Encrypt(bad); err == nil {
		t.Error("Encrypt accepted invalid UTF-8")
	} else {
		assertNoSecrets(t, err.Error(), testConnStr, raw)
	}
	// Decrypting a plaintext connection string (a common mistake) must not
	// echo it.
	if _, err := k.Decrypt(testConnStr); err == nil {
		t.Error("Decrypt accepted a plaintext connection string")
	} else {
		assertNoSecrets(t, err.Error(), testConnStr, raw)
	}
	if _, err := k.Decrypt("a.b.password=S3cr3t!pw"); err == nil {
		t.Error("Decrypt accepted garbage")
	} else {
		assertNoSecrets(t, err.Error(), "password=S3cr3t!pw", raw)
	}
}

func assertNoSecrets(t *testing.T, s, plaintext string, key []byte) {
	t.Helper()
	if plaintext != "" && strings.Contains(s, plaintext) {
		t.Errorf("%q contains the plaintext", s)
	}
	if strings.Contains(s, "S3cr3t") {
		t.Errorf("%q contains the password", s)
	}
	for _, form := range []string{
		base64.StdEncoding.EncodeToString(key),
		base64.RawStdEncoding.EncodeToString(key),
		fmt.Sprintf("%x", key),
		fmt.Sprintf("%v", key),
		string(key),
	} {
		if strings.Contains(s, form) {
			t.Errorf("%q contains the key", s)
		}
	}
}

func FuzzDecrypt(f *testing.F) {
	k := mustKey(f, testKeyBytes(1))
	for _, pt := range []string{"", "x", testConnStr, strings.Repeat("z", 16)} {
		enc, err := k.Encrypt(pt)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
	}
	f.Add("")
	f.Add("..")
	f.Add("a.b.c")
	f.Add(testConnStr)
	f.Fuzz(func(t *testing.T, value string) {
		_ = IsEncrypted(value)
		pt, err := k.Decrypt(value)
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrTampered) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if !IsEncrypted(value) {
			t.Fatal("Decrypt accepted a value IsEncrypted rejects")
		}
		enc, err := k.Encrypt(pt)
		if err != nil {
			t.Fatalf("Encrypt(Decrypt(v)): %v", err)
		}
		got, err := k.Decrypt(enc)
		if err != nil || got != pt {
			t.Fatalf("round trip of decrypted value failed: %v", err)
		}
	})
}

func FuzzRoundTrip(f *testing.F) {
	k := mustKey(f, testKeyBytes(1))
	for _, s := range []string{"", "a", testConnStr, "Grüße 😀", strings.Repeat("q", 32)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, plaintext string) {
		enc, err := k.Encrypt(plaintext)
		if !utf8.ValidString(plaintext) {
			if err == nil {
				t.Fatal("Encrypt accepted invalid UTF-8")
			}
			return
		}
		if err != nil {
			t.Fatalf("Encrypt: %v", err)
		}
		if !IsEncrypted(enc) {
			t.Fatal("IsEncrypted(Encrypt(...)) = false")
		}
		got, err := k.Decrypt(enc)
		if err != nil {
			t.Fatalf("Decrypt: %v", err)
		}
		if got != plaintext {
			t.Fatal("round trip mismatch")
		}
	})
}

// The newest Admin API stores the same ciphertext and HMAC joined by '|'
// ("IV|EncryptedMessage|HMACSignature"): one IV gives the ODS/API's value
// with '|' in place of '.', both decrypt, a value mixing the two is not a
// value, and an unknown format is refused.
func TestAdminAPIFormat(t *testing.T) {
	k := mustKey(t, testKeyBytes(3))
	iv := []byte("0123456789abcdef")
	ods, err := k.encryptWithIV(ODSAPI, testConnStr, iv)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := k.encryptWithIV(AdminAPI, testConnStr, iv)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(admin, "|") != 2 || strings.Contains(admin, ".") || strings.ReplaceAll(admin, "|", ".") != ods {
		t.Fatalf("admin %q is not the ODS/API's %q joined by '|'", admin, ods)
	}
	for _, v := range []string{ods, admin} {
		if got, err := k.Decrypt(v); err != nil || got != testConnStr || !IsEncrypted(v) {
			t.Fatalf("decrypt %q: %q, %v", v, got, err)
		}
	}
	fresh, err := k.EncryptAs(AdminAPI, testConnStr)
	if err != nil || strings.Count(fresh, "|") != 2 {
		t.Fatalf("EncryptAs: %q, %v", fresh, err)
	}
	mixed := strings.Replace(admin, "|", ".", 1)
	if _, err := k.Decrypt(mixed); !errors.Is(err, ErrFormat) || IsEncrypted(mixed) {
		t.Fatalf("a value mixing separators: %v", err)
	}
	if _, err := k.EncryptAs(Format(";"), testConnStr); err == nil {
		t.Fatal("an unknown format was accepted")
	}
}
