package odscrypt

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

const (
	keySize  = 32 // AES-256
	ivSize   = aes.BlockSize
	macSize  = sha256.Size
	numParts = 3
)

// Format is how the three parts of a stored value are joined: the same
// AES-256-CBC ciphertext and HMAC-SHA256 either way.
type Format string

// The formats: the ODS/API's, and the newest Admin API's
// (Ed-Fi-Alliance-OSS/ODS-Admin-API, Aes256SymmetricStringEncryptionProvider:
// "IV|EncryptedMessage|HMACSignature"; docs/adminapi-newest.md), which
// writes the dbo.OdsInstances rows of the instances it manages.
const (
	ODSAPI   Format = "."
	AdminAPI Format = "|"
)

// ErrTampered reports an HMAC mismatch: the value was encrypted under a
// different key, or its ciphertext or HMAC was modified.
var ErrTampered = errors.New("odscrypt: HMAC mismatch (wrong key or modified data)")

// ErrFormat reports a value that is not in the encrypted format: not three
// base64 parts, a wrong IV or HMAC length, a ciphertext that is not a whole
// number of blocks, bad padding, or a plaintext that is not UTF-8.
var ErrFormat = errors.New("odscrypt: malformed encrypted connection string")

// Key is an OdsConnectionStringEncryptionKey: 32 bytes used both for
// AES-256-CBC and for HMAC-SHA256. Its zero value is not a usable key; get one
// from ParseKey.
type Key struct {
	b   [keySize]byte
	set bool
}

// ParseKey decodes the base64 form of a key, as configured for the ODS/API.
// The error says what is wrong but never echoes the input.
func ParseKey(b64 string) (Key, error) {
	raw, err := base64.StdEncoding.Strict().DecodeString(strings.TrimSpace(b64))
	if err != nil {
		// The base64 error can quote an offset but not the data; still, keep
		// it out so nothing about the key leaks.
		return Key{}, errors.New("odscrypt: parse key: not valid standard base64")
	}
	if len(raw) != keySize {
		return Key{}, fmt.Errorf("odscrypt: parse key: decoded to %d bytes, want %d", len(raw), keySize)
	}
	var k Key
	copy(k.b[:], raw)
	k.set = true
	clear(raw)
	return k, nil
}

// String redacts the key so that fmt's %v and %s never print it.
func (k Key) String() string { return "odscrypt.Key(redacted)" }

// GoString redacts the key for %#v.
func (k Key) GoString() string { return "odscrypt.Key(redacted)" }

// Format redacts the key for every verb, including %+v and %x, which would
// otherwise bypass String on a struct value.
func (k Key) Format(f fmt.State, _ rune) { io.WriteString(f, "odscrypt.Key(redacted)") }

var errNoKey = errors.New("odscrypt: key not initialised (use ParseKey)")

// Encrypt encrypts a connection string with a fresh random IV into the
// format the ODS/API reads.
func (k Key) Encrypt(plaintext string) (string, error) { return k.EncryptAs(ODSAPI, plaintext) }

// EncryptAs is Encrypt into format f.
func (k Key) EncryptAs(f Format, plaintext string) (string, error) {
	if f != ODSAPI && f != AdminAPI {
		return "", fmt.Errorf("odscrypt: encrypt: unknown format %q", string(f))
	}
	var iv [ivSize]byte
	if _, err := rand.Read(iv[:]); err != nil {
		return "", fmt.Errorf("odscrypt: encrypt: generate IV: %w", err)
	}
	return k.encryptWithIV(f, plaintext, iv[:])
}

// encryptWithIV is EncryptAs with a chosen IV, so tests can pin it.
func (k Key) encryptWithIV(f Format, plaintext string, iv []byte) (string, error) {
	if !k.set {
		return "", errNoKey
	}
	if len(iv) != ivSize {
		return "", fmt.Errorf("odscrypt: encrypt: IV is %d bytes, want %d", len(iv), ivSize)
	}
	// .NET's UTF8 encoder would silently replace invalid sequences, so the
	// ODS/API would see a different string than we were given: refuse.
	if !utf8.ValidString(plaintext) {
		return "", errors.New("odscrypt: encrypt: plaintext is not valid UTF-8")
	}
	block, err := aes.NewCipher(k.b[:])
	if err != nil {
		return "", fmt.Errorf("odscrypt: encrypt: %w", err)
	}
	pad := ivSize - len(plaintext)%ivSize
	buf := make([]byte, len(plaintext)+pad)
	copy(buf, plaintext)
	for i := len(plaintext); i < len(buf); i++ {
		buf[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(buf, buf)

	enc := base64.StdEncoding
	sep := string(f)
	return enc.EncodeToString(iv) + sep + enc.EncodeToString(buf) + sep + enc.EncodeToString(k.mac(buf)), nil
}

// Decrypt verifies and decrypts a stored value, in either Format. It returns ErrFormat (wrapped)
// for anything not in the format, and ErrTampered when the HMAC does not match.
// The HMAC is checked, in constant time, before any decryption.
func (k Key) Decrypt(value string) (string, error) {
	if !k.set {
		return "", errNoKey
	}
	iv, ct, tag, err := split(value)
	if err != nil {
		return "", fmt.Errorf("odscrypt: decrypt: %w", err)
	}
	if !hmac.Equal(tag, k.mac(ct)) {
		return "", fmt.Errorf("odscrypt: decrypt: %w", ErrTampered)
	}
	block, err := aes.NewCipher(k.b[:])
	if err != nil {
		return "", fmt.Errorf("odscrypt: decrypt: %w", err)
	}
	pt := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(pt, ct)

	// Strict PKCS#7: 1..16 bytes, all equal to the count. The HMAC has
	// already passed, so this is not a padding oracle.
	n := int(pt[len(pt)-1])
	if n == 0 || n > ivSize || !bytes.Equal(pt[len(pt)-n:], bytes.Repeat([]byte{byte(n)}, n)) {
		return "", fmt.Errorf("odscrypt: decrypt: bad padding: %w", ErrFormat)
	}
	pt = pt[:len(pt)-n]
	if !utf8.Valid(pt) {
		return "", fmt.Errorf("odscrypt: decrypt: plaintext is not valid UTF-8: %w", ErrFormat)
	}
	return string(pt), nil
}

// IsEncrypted reports whether value has the shape of an encrypted connection
// string: three standard-base64 parts separated by '.' or all by '|', a 16-byte IV, a
// non-empty ciphertext that is a whole number of blocks, and a 32-byte HMAC.
// It cannot tell whether the value was encrypted under a given key.
func IsEncrypted(value string) bool {
	_, _, _, err := split(value)
	return err == nil
}

func (k Key) mac(ct []byte) []byte {
	m := hmac.New(sha256.New, k.b[:])
	m.Write(ct)
	return m.Sum(nil)
}

// split decodes the three parts and checks their lengths. Errors name the
// part, never its content.
func split(value string) (iv, ct, tag []byte, err error) {
	sep := string(ODSAPI)
	if strings.Contains(value, string(AdminAPI)) {
		sep = string(AdminAPI) // base64 has neither; one kind is used throughout
	}
	parts := strings.Split(value, sep)
	if len(parts) != numParts {
		return nil, nil, nil, fmt.Errorf("%d '%s'-separated parts, want %d: %w", len(parts), sep, numParts, ErrFormat)
	}
	var dec [numParts][]byte
	names := [numParts]string{"IV", "ciphertext", "HMAC"}
	for i, p := range parts {
		b, derr := base64.StdEncoding.Strict().DecodeString(p)
		if derr != nil {
			return nil, nil, nil, fmt.Errorf("%s is not valid standard base64: %w", names[i], ErrFormat)
		}
		dec[i] = b
	}
	iv, ct, tag = dec[0], dec[1], dec[2]
	switch {
	case len(iv) != ivSize:
		return nil, nil, nil, fmt.Errorf("IV is %d bytes, want %d: %w", len(iv), ivSize, ErrFormat)
	case len(ct) == 0 || len(ct)%aes.BlockSize != 0:
		return nil, nil, nil, fmt.Errorf("ciphertext is %d bytes, want a non-zero multiple of %d: %w", len(ct), aes.BlockSize, ErrFormat)
	case len(tag) != macSize:
		return nil, nil, nil, fmt.Errorf("HMAC is %d bytes, want %d: %w", len(tag), macSize, ErrFormat)
	}
	return iv, ct, tag, nil
}
