package main

// Credentials from the AWS CLI's chain of sources, against versitygw:
// container credentials, the instance metadata service (IMDSv2) and web
// identity, each served by a fake on 127.0.0.1 that hands out the
// server's root keys; the environment first, then web identity, the
// shared credentials file, the container, the metadata service.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// credFake is a credentials service: it counts its requests and hands
// out access/secret.
type credFake struct {
	*httptest.Server
	n atomic.Int64
}

func jsonCreds(access, secret string) map[string]string {
	return map[string]string{"Code": "Success", "AccessKeyId": access, "SecretAccessKey": secret, "Token": "",
		"Expiration": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}
}

// containerFake serves ECS container credentials to a request that
// carries the authorization token.
func containerFake(t *testing.T, access, secret, auth string) *credFake {
	f := &credFake{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.n.Add(1)
		if r.Header.Get("Authorization") != auth || r.URL.Path != "/creds" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		json.NewEncoder(w).Encode(jsonCreds(access, secret))
	}))
	t.Cleanup(f.Close)
	return f
}

// imdsFake is the EC2 instance metadata service, IMDSv2 only: every
// metadata request must carry the session token PUT /latest/api/token
// gave. hang makes it answer nothing, as a black hole would.
func imdsFake(t *testing.T, access, secret string, hang bool) *credFake {
	f := &credFake{}
	done := make(chan struct{})
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.n.Add(1)
		if hang {
			select {
			case <-r.Context().Done():
			case <-done:
			}
			return
		}
		switch {
		case r.Method == http.MethodPut && r.URL.Path == "/latest/api/token" && r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds") != "":
			fmt.Fprint(w, "imds-session")
		case r.Header.Get("X-aws-ec2-metadata-token") != "imds-session":
			http.Error(w, "IMDSv2 only", http.StatusUnauthorized)
		case r.URL.Path == "/latest/meta-data/iam/security-credentials/":
			fmt.Fprint(w, "cbfs-role\n")
		case r.URL.Path == "/latest/meta-data/iam/security-credentials/cbfs-role":
			json.NewEncoder(w).Encode(jsonCreds(access, secret))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(func() { close(done); f.Close() })
	return f
}

// stsFake answers AssumeRoleWithWebIdentity for the role and token.
func stsFake(t *testing.T, access, secret, role, token string) *credFake {
	f := &credFake{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.n.Add(1)
		r.ParseForm()
		if r.Form.Get("Action") != "AssumeRoleWithWebIdentity" || r.Form.Get("RoleArn") != role || r.Form.Get("WebIdentityToken") != token {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Code>AccessDenied</Code><Message>no</Message></Error></ErrorResponse>`)
			return
		}
		fmt.Fprintf(w, `<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleWithWebIdentityResult>
<Credentials><AccessKeyId>%s</AccessKeyId><SecretAccessKey>%s</SecretAccessKey><SessionToken></SessionToken><Expiration>%s</Expiration></Credentials>
</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>`, access, secret, time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	}))
	t.Cleanup(f.Close)
	return f
}

// runClean runs cbfs with none of the process's AWS_* variables (nor
// HOME's ~/.aws), only env.
func runClean(t *testing.T, dir string, env []string, args ...string) (result, time.Duration) {
	t.Helper()
	cmd := exec.Command(cbfsBin, args...)
	cmd.Dir = dir
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "AWS_") && !strings.HasPrefix(e, "CBFS_KEY_FILE=") && !strings.HasPrefix(e, "HOME=") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Env = append(cmd.Env, "HOME="+dir)
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	r := result{stdout: stdout.Bytes(), stderr: stderr.Bytes()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r, took
}

func TestS3Credentials(t *testing.T) {
	t.Parallel()
	e := newS3Env(t)
	e.must(t, "pack", "-k", "k", "-o", "s3://bkt/a/0001.cbfs", "tree")
	base := []string{"AWS_ENDPOINT_URL=" + e.s.Endpoint, "AWS_REGION=us-east-1", "CBFS_S3_RETRY_FOR=1s"}
	noIMDS := append(base[:len(base):len(base)], "AWS_EC2_METADATA_DISABLED=true")
	with := func(env []string, more ...string) []string { return append(env[:len(env):len(env)], more...) }
	const wrongSecret = "wrong-secret-never-shown"
	ok := func(name string, env []string) result {
		t.Helper()
		r, _ := runClean(t, e.dir, env, "verify", "s3://bkt/a/")
		if r.code != 0 || !strings.Contains(string(r.stdout), "ok       s3://bkt/a/0001.cbfs") {
			t.Errorf("%s: %s\n%s", name, r, r.stdout)
		}
		return r
	}
	denied := func(name string, env []string, source string) {
		t.Helper()
		r, _ := runClean(t, e.dir, env, "verify", "s3://bkt/a/")
		// An unlistable prefix is an unreadable entry (stdout), as a
		// directory that cannot be read.
		if r.code != exitFailure || !strings.Contains(string(r.stdout)+string(r.stderr), "credentials: "+source) {
			t.Errorf("%s: want access denied with credentials from %s: %s", name, source, r)
		}
		if out := string(r.stdout) + string(r.stderr); strings.Contains(out, wrongSecret) || strings.Contains(out, e.s.Secret) || strings.Contains(out, "container-auth") {
			t.Errorf("%s: a secret in the output: %s", name, r)
		}
	}

	// Container credentials (ECS task role: FULL_URI on a loopback
	// address, with the authorization token).
	ctr := containerFake(t, e.s.Access, e.s.Secret, "container-auth")
	ctrEnv := []string{"AWS_CONTAINER_CREDENTIALS_FULL_URI=" + ctr.URL + "/creds", "AWS_CONTAINER_AUTHORIZATION_TOKEN=container-auth"}
	ok("container credentials", with(noIMDS, ctrEnv...))
	if ctr.n.Load() == 0 {
		t.Error("the container endpoint was not asked")
	}

	// The instance metadata service, IMDSv2 (token first).
	imds := imdsFake(t, e.s.Access, e.s.Secret, false)
	ok("instance metadata", with(base, "AWS_EC2_METADATA_SERVICE_ENDPOINT="+imds.URL))
	if imds.n.Load() < 3 {
		t.Errorf("the metadata service had %d requests", imds.n.Load())
	}

	// Web identity (IRSA): the token file exchanged at STS.
	tokenFile := filepath.Join(e.dir, "web-token")
	os.WriteFile(tokenFile, []byte("the-web-identity-token"), 0o600)
	sts := stsFake(t, e.s.Access, e.s.Secret, "arn:aws:iam::1:role/cbfs", "the-web-identity-token")
	webEnv := []string{"AWS_WEB_IDENTITY_TOKEN_FILE=" + tokenFile, "AWS_ROLE_ARN=arn:aws:iam::1:role/cbfs", "AWS_ENDPOINT_URL_STS=" + sts.URL}
	ok("web identity", with(noIMDS, webEnv...))
	if sts.n.Load() == 0 {
		t.Error("STS was not asked")
	}

	// The environment comes first: none of the services is asked.
	ctr.n.Store(0)
	imds.n.Store(0)
	sts.n.Store(0)
	envKeys := []string{"AWS_ACCESS_KEY_ID=" + e.s.Access, "AWS_SECRET_ACCESS_KEY=" + e.s.Secret}
	ok("env over container", with(with(base, envKeys...), ctrEnv...))
	ok("env over instance metadata", with(with(base, envKeys...), "AWS_EC2_METADATA_SERVICE_ENDPOINT="+imds.URL))
	ok("env over web identity", with(with(base, envKeys...), webEnv...))
	if ctr.n.Load()+imds.n.Load()+sts.n.Load() != 0 {
		t.Errorf("with keys in the environment, the container endpoint had %d requests, the metadata service %d, STS %d", ctr.n.Load(), imds.n.Load(), sts.n.Load())
	}
	// Wrong keys in the environment still win: denied, and the message
	// names the source, not the keys.
	denied("wrong env keys over container", with(with(noIMDS, ctrEnv...), "AWS_ACCESS_KEY_ID="+e.s.Access, "AWS_SECRET_ACCESS_KEY="+wrongSecret), "the environment")

	// The shared credentials file (a profile) before container
	// credentials and the metadata service; web identity before it.
	creds := filepath.Join(e.dir, "aws-credentials")
	os.WriteFile(creds, []byte(fmt.Sprintf("[cbfs]\naws_access_key_id = %s\naws_secret_access_key = %s\n[wrong]\naws_access_key_id = %s\naws_secret_access_key = %s\n", e.s.Access, e.s.Secret, e.s.Access, wrongSecret)), 0o600)
	fileEnv := []string{"AWS_SHARED_CREDENTIALS_FILE=" + creds, "AWS_PROFILE=cbfs"}
	ctr.n.Store(0)
	imds.n.Store(0)
	ok("shared file over container", with(with(base, fileEnv...), ctrEnv...))
	ok("shared file over instance metadata", with(with(base, fileEnv...), "AWS_EC2_METADATA_SERVICE_ENDPOINT="+imds.URL))
	if ctr.n.Load()+imds.n.Load() != 0 {
		t.Errorf("with a profile, the container endpoint had %d requests, the metadata service %d", ctr.n.Load(), imds.n.Load())
	}
	ok("web identity over the shared file", with(with(noIMDS, webEnv...), "AWS_SHARED_CREDENTIALS_FILE="+creds, "AWS_PROFILE=wrong"))
	denied("wrong profile over container", with(with(noIMDS, ctrEnv...), "AWS_SHARED_CREDENTIALS_FILE="+creds, "AWS_PROFILE=wrong"), "the shared credentials file")
	// A profile named that the file does not have is an error, not a
	// fall through to the instance's own role (the AWS CLI's rule).
	imds.n.Store(0)
	r, _ := runClean(t, e.dir, with(with(base, "AWS_EC2_METADATA_SERVICE_ENDPOINT="+imds.URL), "AWS_SHARED_CREDENTIALS_FILE="+creds, "AWS_PROFILE=nope"), "verify", "s3://bkt/a/")
	if r.code != exitFailure || !strings.Contains(string(r.stdout)+string(r.stderr), "AWS_PROFILE=nope: no keys for that profile") || imds.n.Load() != 0 {
		t.Errorf("a profile the file does not have: %s\n%s (metadata service asked %d times)", r, r.stdout, imds.n.Load())
	}

	// No credentials anywhere: unsigned, denied, said so; a metadata
	// service that never answers costs about a second per request (the
	// token, then IMDSv1's role list), once, not one wait per request.
	denied("no credentials", noIMDS, "none found")
	hole := imdsFake(t, "", "", true)
	r, took := runClean(t, e.dir, with(base, "AWS_EC2_METADATA_SERVICE_ENDPOINT="+hole.URL), "verify", "s3://bkt/a/")
	if r.code != exitFailure || !strings.Contains(string(r.stdout)+string(r.stderr), "none found") {
		t.Errorf("a metadata service that never answers: %s", r)
	}
	if took > 6*time.Second || hole.n.Load() > 2 {
		t.Errorf("a metadata service that never answers: %s and %d requests", took.Round(time.Millisecond), hole.n.Load())
	}
}

// TestS3SettingsAreUsage: a setting of the environment cbfs cannot use,
// and a prefix where -o needs an object, are usage errors (status 2),
// found before any request.
func TestS3SettingsAreUsage(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, dir, "keygen", "-o", "k")
	writeFile(t, filepath.Join(dir, "src/a"), []byte("a\n"), 0o644)
	base := []string{"AWS_ACCESS_KEY_ID=x", "AWS_SECRET_ACCESS_KEY=y", "AWS_ENDPOINT_URL=http://127.0.0.1:1"}
	for _, c := range []struct {
		env  []string
		args []string
		want string
	}{
		{[]string{"CBFS_S3_PARTS=0"}, []string{"ls", "-k", "k", "s3://b/x.cbfs"}, `CBFS_S3_PARTS="0": want 1 to 64`},
		{[]string{"CBFS_S3_PART_SIZE=4MiB"}, []string{"ls", "-k", "k", "s3://b/x.cbfs"}, `CBFS_S3_PART_SIZE="4MiB"`},
		{[]string{"CBFS_S3_RETRY_FOR=soon"}, []string{"verify", "s3://b/x.cbfs"}, `CBFS_S3_RETRY_FOR="soon"`},
		{nil, []string{"pack", "-k", "k", "-o", "s3://b/prefix/", "src"}, "a prefix, not an object"},
	} {
		r, _ := runClean(t, dir, append(base, c.env...), c.args...)
		if r.code != exitUsage || !strings.Contains(string(r.stdout)+string(r.stderr), c.want) {
			t.Errorf("%v %v: %s, want status 2 and %q", c.env, c.args, r, c.want)
		}
	}
}
