package store

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Credentials come from the first of these sources that has them, in the
// order the AWS CLI takes them (botocore's credential chain):
//
//  1. the environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
//     AWS_SESSION_TOKEN;
//  2. web identity (EKS IAM roles for service accounts):
//     AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN (AWS_ROLE_SESSION_NAME),
//     exchanged at STS (AWS_ENDPOINT_URL_STS, else the region's);
//  3. the shared credentials file (AWS_SHARED_CREDENTIALS_FILE, default
//     ~/.aws/credentials; and AWS_CONFIG_FILE, default ~/.aws/config)
//     under AWS_PROFILE (default "default");
//  4. container credentials (ECS task roles, EKS Pod Identity):
//     AWS_CONTAINER_CREDENTIALS_RELATIVE_URI, or
//     AWS_CONTAINER_CREDENTIALS_FULL_URI (a loopback address, or any with
//     AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE), with
//     AWS_CONTAINER_AUTHORIZATION_TOKEN;
//  5. the EC2 instance metadata service (IMDSv2: a session token first,
//     IMDSv1 where the token cannot be had; 1 s per request, as the AWS
//     CLI), unless AWS_EC2_METADATA_DISABLED=true;
//     AWS_EC2_METADATA_SERVICE_ENDPOINT replaces http://169.254.169.254.
//
// A source is asked only when the ones before it have nothing: with
// credentials in the environment no request goes to STS, a container
// endpoint or the instance metadata service. minio-go's IAM provider
// serves 2, 4 and 5, choosing by the environment (a web identity token
// file first, then a container URI, then the metadata service), so at
// most one of them is in the chain: the one the environment selects. If
// no source has credentials, requests go unsigned (a public bucket) and
// the sources are not asked again by this process. The credentials'
// own requests go through clients of their own, with timeouts, not the
// store's (they are not counted as store requests). Nothing of the
// credentials is kept in messages: they say which source was used.

// credChain is the chain of credential sources.
type credChain struct {
	mu        sync.Mutex
	providers []namedProvider
	curr      credentials.Provider
	source    string // the source in use, or why none
	failed    bool   // no source had credentials: not asked again
}

type namedProvider struct {
	name string
	p    credentials.Provider
	// final: when it has nothing, no later source is asked: a profile
	// named in AWS_PROFILE that is not there is an error, as for the
	// AWS CLI, not a fall through to an instance's own role.
	final error
}

func (c *credChain) RetrieveWithCredContext(cc *credentials.CredContext) (credentials.Value, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var tried []string
	for _, np := range c.providers {
		v, err := np.p.RetrieveWithCredContext(cc)
		if err != nil || v.AccessKeyID == "" || v.SecretAccessKey == "" {
			if np.final != nil {
				c.curr, c.source = nil, np.final.Error()
				return credentials.Value{}, np.final
			}
			tried = append(tried, np.name)
			continue
		}
		c.curr, c.source = np.p, np.name
		return v, nil
	}
	c.curr, c.failed = nil, true
	c.source = "none found (tried " + strings.Join(tried, ", ") + "): requests are unsigned"
	return credentials.Value{SignerType: credentials.SignatureAnonymous}, nil
}

func (c *credChain) Retrieve() (credentials.Value, error) { return c.RetrieveWithCredContext(nil) }

func (c *credChain) IsExpired() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.curr != nil {
		return c.curr.IsExpired()
	}
	return !c.failed
}

// Source says where the credentials in use came from (or that none were
// found), for messages: never the credentials themselves.
func (c *credChain) Source() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.source == "" {
		return "not looked up yet"
	}
	return c.source
}

// credClient is an HTTP client for a credentials service: its own
// connections, bounded by timeout, never counted as store requests.
func credClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: min(timeout, 5*time.Second)}).DialContext,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   2,
	}}
}

// imdsTimeout bounds each request to the instance metadata service, as
// the AWS CLI's metadata_service_timeout (1 s) does: on a machine
// without one, looking costs at most a second or two, once.
var imdsTimeout = time.Second

// newCredChain makes the chain the environment configures (see above).
func newCredChain(region string) *credChain {
	c := &credChain{providers: []namedProvider{{name: "the environment (AWS_ACCESS_KEY_ID)", p: &credentials.EnvAWS{}}}}
	webIdentity := os.Getenv("AWS_WEB_IDENTITY_TOKEN_FILE") != ""
	container := os.Getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") != "" || os.Getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI") != ""
	if webIdentity && os.Getenv("AWS_ROLE_ARN") != "" {
		sts := os.Getenv("AWS_ENDPOINT_URL_STS")
		c.providers = append(c.providers, namedProvider{name: "web identity (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN)",
			p: &credentials.IAM{Client: credClient(30 * time.Second), Endpoint: sts, Region: region}})
	}
	shared := namedProvider{name: "the shared credentials file (AWS_PROFILE)", p: &credentials.FileAWSCredentials{}}
	if profile := os.Getenv("AWS_PROFILE"); profile != "" {
		file := os.Getenv("AWS_SHARED_CREDENTIALS_FILE")
		if file == "" {
			file = "~/.aws/credentials"
		}
		shared.final = fmt.Errorf("AWS_PROFILE=%s: no keys for that profile in the shared credentials file %s (nor AWS_ACCESS_KEY_ID in the environment)", profile, file)
	}
	c.providers = append(c.providers, shared)
	switch {
	case webIdentity:
		// minio-go's IAM provider would take the token file again.
	case container:
		c.providers = append(c.providers, namedProvider{name: "container credentials (AWS_CONTAINER_CREDENTIALS_*)",
			p: &credentials.IAM{Client: credClient(10 * time.Second)}})
	case !strings.EqualFold(os.Getenv("AWS_EC2_METADATA_DISABLED"), "true"):
		c.providers = append(c.providers, namedProvider{name: "the EC2 instance metadata service",
			p: &credentials.IAM{Client: credClient(imdsTimeout), Endpoint: strings.TrimSuffix(os.Getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT"), "/")}})
	}
	return c
}
