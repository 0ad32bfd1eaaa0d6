package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path"
	"strconv"
	"strings"

	"github.com/minio/minio-go/v7"
)

// Sequence reservations. An index in an object store takes no lock, so
// two writers that read it at once would both take its high-seq + 1 for
// their new archives. Each writer therefore reserves its number first: it
// creates a small object named by the number, beside the index, with
// If-None-Match: *, and the number whose object it created is its own.
// A reservation is an object, not a lock: nothing waits for it, and one a
// crashed writer leaves behind costs only a gap in the sequence numbers.

// seqBody is what a reservation holds: it says what it is to whoever
// finds it in a listing. (Not empty: an empty PUT over plain HTTP goes as
// an aws-chunked stream, which some S3-compatible stores refuse.)
var seqBody = []byte("cbfs: a sequence number reserved for an archive of this index\n")

// seqDigits is how many digits a reservation's number is written with,
// zero-padded, so that the keys sort as the numbers do: 2^64-1 has 20.
const seqDigits = 20

// SeqPrefix is the prefix of the reservations of the index at indexKey:
// ".NAME.seq/" beside the index NAME, as a local index has its lock file
// ".NAME.lock" beside it.
func SeqPrefix(indexKey string) string {
	dir, base := path.Split(indexKey)
	return dir + "." + base + ".seq/"
}

// SeqKey is the key of the reservation of n for the index at indexKey.
func SeqKey(indexKey string, n uint64) string {
	return fmt.Sprintf("%s%0*d", SeqPrefix(indexKey), seqDigits, n)
}

// IsSeqReservation says whether key is a sequence reservation (see
// SeqPrefix): a small object that is neither an archive nor an index,
// left out of a prefix's objects as a DIR leaves out ".NAME.lock".
func IsSeqReservation(key string) bool {
	dir, base := path.Split(key)
	if len(base) != seqDigits || strings.Trim(base, "0123456789") != "" {
		return false
	}
	dir = strings.TrimSuffix(dir, "/")
	last := dir[strings.LastIndexByte(dir, '/')+1:]
	return strings.HasPrefix(last, ".") && strings.HasSuffix(last, ".seq") && len(last) > len("..seq")
}

// seqOf is the number of a reservation's key under prefix.
func seqOf(prefix, key string) (uint64, bool) {
	s, ok := strings.CutPrefix(key, prefix)
	if !ok || len(s) != seqDigits {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// listSeqs lists the reservations of the index at indexKey above after
// (all of them when after is 0), in order.
func (b *S3Bucket) listSeqs(ctx context.Context, indexKey string, after uint64) ([]uint64, error) {
	prefix := SeqPrefix(indexKey)
	start := ""
	if after > 0 {
		start = SeqKey(indexKey, after)
	}
	var out []uint64
	token := ""
	for {
		var res minio.ListBucketV2Result
		err := b.s.retry(ctx, func() (err error) {
			res, err = b.s.core.ListObjectsV2(b.bucket, prefix, start, token, "", 1000)
			return err
		})
		if err != nil {
			return nil, b.s3Err("list", prefix, err)
		}
		for _, o := range res.Contents {
			if n, ok := seqOf(prefix, o.Key); ok && n > after {
				out = append(out, n)
			}
		}
		if !res.IsTruncated || res.NextContinuationToken == "" {
			return out, nil
		}
		token = res.NextContinuationToken
	}
}

// ErrSeqExhausted is a reservation past the highest sequence number.
var ErrSeqExhausted = errors.New("no sequence number left: the highest, 2^64-1, is taken")

// ReserveSeq reserves the lowest free sequence number from from on for a
// new archive of the index at indexKey and returns it: a LIST of the
// reservations from there jumps past the numbers taken, then the
// object of the next one is created with If-None-Match: *. A 412 (another
// writer created it first) lists and tries again. The store must honour
// conditional writes (ProbeConditionalWrites).
//
// A number created but lost in the answer (a reset connection, then a
// retry the store refuses) is skipped: a gap, never a number shared.
func (b *S3Bucket) ReserveSeq(ctx context.Context, indexKey string, from uint64) (uint64, error) {
	if from == 0 {
		from = 1
	}
	for tries := 0; tries < 1000; tries++ {
		taken, err := b.listSeqs(ctx, indexKey, from-1)
		if err != nil {
			return 0, err
		}
		n := from
		if len(taken) > 0 {
			if top := taken[len(taken)-1]; top == math.MaxUint64 {
				return 0, ErrSeqExhausted
			} else {
				n = max(n, top+1)
			}
		}
		err = b.Put(ctx, SeqKey(indexKey, n), seqBody, CreateOptions{})
		switch {
		case err == nil:
			return n, nil
		case !errors.Is(err, ErrChanged):
			return 0, err
		case n == math.MaxUint64:
			return 0, ErrSeqExhausted
		}
		from = n + 1
	}
	return 0, fmt.Errorf("%s: no sequence number could be reserved in 1000 tries", b.URL(SeqPrefix(indexKey)))
}

// ReleaseSeqs removes the reservations of the index at indexKey up to
// upTo, the high-seq of an index just written: every writer that reads it
// or a later one starts above upTo, and one that read an older index
// checks, once its number is reserved, that the index's high-seq is still
// below it (see repo's IndexUpdate.ReserveSeq). Best effort: one left is
// removed by the next writer's release.
func (b *S3Bucket) ReleaseSeqs(ctx context.Context, indexKey string, upTo uint64) (int, error) {
	seqs, err := b.listSeqs(ctx, indexKey, 0)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range seqs {
		if s > upTo {
			break
		}
		if err := b.Delete(ctx, SeqKey(indexKey, s)); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
