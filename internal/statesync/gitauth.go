package statesync

import (
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/tether-dev/tether/internal/redact"
)

// Git credentials for hydrate's clones come from the environment, never
// from --repo: a URL is printed, stored in .git/config and visible in the
// process list of tether, git and git-remote-http. The token reaches git as
// an http.<url>.extraHeader in git's own environment (GIT_CONFIG_COUNT,
// GIT_CONFIG_KEY_n, GIT_CONFIG_VALUE_n), scoped to the repository's host, so
// it is on no command line and in no file of the clone.
const (
	// EnvGitToken holds the token itself.
	EnvGitToken = "TETHER_GIT_TOKEN"
	// EnvGitTokenFile names a file holding the token (a mounted Secret).
	EnvGitTokenFile = "TETHER_GIT_TOKEN_FILE"
	// EnvGitUsername is the user name of Basic authentication; the default,
	// x-access-token, is what GitHub expects with a token (GitLab and Gitea
	// take any name with a personal access token).
	EnvGitUsername = "TETHER_GIT_USERNAME"
	// EnvGitAuth is basic (the default) or bearer.
	EnvGitAuth = "TETHER_GIT_AUTH"
)

// GitCredentialsHint says what to do instead of putting a git credential
// into a repository URL.
const GitCredentialsHint = "git credentials never go in the URL or on a command line: put the token in " +
	EnvGitToken + " or in a file named by " + EnvGitTokenFile + " (on Kubernetes, a key " + EnvGitToken + " in the Secret named by " +
	"spec.storage.credentialsSecret), and hydrate gives it to git as an http.extraHeader for the repository's host " +
	"through git's environment; for ssh:// and user@host:path URLs use an ssh key"

// allowedProtocols are the git transports hydrate clones through; ext:: and
// other transport helpers run programs, so a repository URL cannot name one.
const allowedProtocols = "https:http:ssh:git:file"

// maxTokenFile bounds what is read from EnvGitTokenFile.
const maxTokenFile = 64 << 10

// gitToken returns the token from the environment, or "" when none is set.
func gitToken() (string, error) {
	tok, hasTok := os.LookupEnv(EnvGitToken)
	file := os.Getenv(EnvGitTokenFile)
	if hasTok && tok != "" && file != "" {
		return "", fmt.Errorf("both %s and %s are set; set one", EnvGitToken, EnvGitTokenFile)
	}
	src := EnvGitToken
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return "", fmt.Errorf("%s: %w", EnvGitTokenFile, err)
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
		if err != nil {
			return "", fmt.Errorf("%s: read %s: %w", EnvGitTokenFile, file, err)
		}
		if len(b) > maxTokenFile {
			return "", fmt.Errorf("%s: %s is larger than %d bytes, which is no token; point it at the file holding only the token", EnvGitTokenFile, file, maxTokenFile)
		}
		tok, src = string(b), EnvGitTokenFile+" ("+file+")"
	}
	tok = strings.TrimSpace(tok)
	for _, r := range tok {
		// A line break would end the header and start another one.
		if r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("the token in %s contains a control character (a line break?); it must be one line", src)
		}
	}
	return tok, nil
}

// authHeaderValue is the extraHeader value for tok.
func authHeaderValue(tok string) (string, error) {
	switch scheme := strings.ToLower(os.Getenv(EnvGitAuth)); scheme {
	case "bearer":
		return "Authorization: Bearer " + tok, nil
	case "", "basic":
		user := os.Getenv(EnvGitUsername)
		if user == "" {
			user = "x-access-token"
		}
		if strings.ContainsAny(user, ":\r\n") {
			return "", fmt.Errorf("%s must not contain ':' or a line break", EnvGitUsername)
		}
		return "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+tok)), nil
	default:
		return "", fmt.Errorf("%s=%q: use basic or bearer", EnvGitAuth, scheme)
	}
}

// gitCloneEnv is the environment of `git clone` for rawURL: tether's own,
// without the token variable, with prompts off and transports limited, and
// with the token as an extraHeader for the URL's scheme and host when one is
// set and the URL is https (or http to this machine: a token never crosses a
// network in clear). sent reports whether the token was handed to git.
func gitCloneEnv(rawURL string) (env []string, sent bool, err error) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k == EnvGitToken {
			continue // git gets the header, not the variable
		}
		env = append(env, kv)
	}
	env = append(env, "GIT_TERMINAL_PROMPT=0", "GIT_ALLOW_PROTOCOL="+allowedProtocols)
	tok, err := gitToken()
	if err != nil || tok == "" {
		return env, false, err
	}
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" || !(u.Scheme == "https" || u.Scheme == "http" && isLoopback(u.Hostname())) {
		return env, false, nil
	}
	header, err := authHeaderValue(tok)
	if err != nil {
		return nil, false, err
	}
	// Config from the environment is numbered; keep entries set by whoever
	// started tether and add ours after them.
	n := 0
	if c := os.Getenv("GIT_CONFIG_COUNT"); c != "" {
		if n, err = strconv.Atoi(c); err != nil || n < 0 {
			return nil, false, fmt.Errorf("GIT_CONFIG_COUNT=%q in the environment is not a count", c)
		}
	}
	scope := u.Scheme + "://" + u.Host + "/"
	env = append(env,
		fmt.Sprintf("GIT_CONFIG_KEY_%d=http.%s.extraHeader", n, scope),
		fmt.Sprintf("GIT_CONFIG_VALUE_%d=%s", n, header),
		fmt.Sprintf("GIT_CONFIG_COUNT=%d", n+1))
	return env, true, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkRepoURL refuses what --repo must not be: a URL carrying a credential
// or naming a transport that runs a program.
func checkRepoURL(raw string) error {
	if strings.HasPrefix(raw, "-") {
		return fmt.Errorf("--repo %q starts with '-'", raw)
	}
	if strings.Contains(raw, "::") {
		return fmt.Errorf("--repo %s: transport helpers (<transport>::<address>) are not allowed; use an https://, ssh://, git:// or file:// URL or user@host:path", redactRepo(raw))
	}
	if w := redact.Credential(raw); w != "" {
		return fmt.Errorf("--repo %s carries a credential (%s); remove it: %s", redactRepo(raw), w, GitCredentialsHint)
	}
	if i := strings.Index(raw, "://"); i > 0 {
		switch strings.ToLower(raw[:i]) {
		case "https", "http", "ssh", "git+ssh", "ssh+git", "git", "file":
		default:
			return fmt.Errorf("--repo %s: scheme %q is not supported; use https://, ssh://, git:// or file://", redactRepo(raw), raw[:i])
		}
	}
	return nil
}

// redactRepo is how a repository URL is printed; String, not URL, since
// user@host:path does not parse as a URL and is no secret.
func redactRepo(raw string) string { return redact.String(raw) }

// authFailed: git's output says the server wanted credentials it did not get.
func authFailed(out string) bool {
	for _, s := range []string{"Authentication failed", "could not read Username", "could not read Password", "terminal prompts disabled", "401", "403"} {
		if strings.Contains(out, s) {
			return true
		}
	}
	return false
}
