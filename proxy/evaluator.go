package proxy

import (
	"context"

	"github.com/mcptrail/mcptrail/proxy/auth"
	"github.com/mcptrail/mcptrail/proxy/config"
)

// PolicyEvaluator decides requests under a config without serving them:
// the policy chain a gateway built from that config runs (the same
// policySet.decide), for `mcptrail policy whatif`. It is safe for
// concurrent use.
type PolicyEvaluator struct {
	ps *policySet
}

// NewPolicyEvaluator compiles cfg's policy as a gateway would, with
// policies after the token rules as Options.Policies.
func NewPolicyEvaluator(cfg *config.Config, policies ...PolicyCheck) (*PolicyEvaluator, error) {
	// Output filters decide nothing about a request: any redactor lets
	// them compile.
	ps, err := newPolicySet(cfg, Options{Policies: policies}, identityRedactor{}, nil, nil, nil)
	if err != nil {
		return nil, err
	}
	return &PolicyEvaluator{ps: ps}, nil
}

// Principals are the principals this config would give a recorded caller:
// with authentication off, the anonymous one; a JWT's (jwt, or a static
// principal unknown here with OAuth on) with the recorded roles and this
// config's rules for them; else the static tokens held by name (several
// when tokens share a principal). None means the caller would not be
// authenticated.
func (e *PolicyEvaluator) Principals(name string, roles []string, jwt bool) []*auth.Principal {
	a := e.ps.auth
	if !a.Enabled() {
		return []*auth.Principal{auth.AnonymousPrincipal()}
	}
	if !jwt {
		if ps := a.PrincipalsNamed(name); len(ps) > 0 {
			return ps
		}
	}
	if p, ok := a.PrincipalWithRoles(name, roles); ok {
		return []*auth.Principal{p}
	}
	return nil
}

// Decide runs the policy chain on r. With authentication off and no other
// check nothing is decided: the zero (allowing) decision, as a gateway
// records "none".
func (e *PolicyEvaluator) Decide(ctx context.Context, r *PolicyRequest) PolicyDecision {
	if !e.ps.policyOn() {
		return PolicyDecision{}
	}
	return e.ps.decide(ctx, r)
}

// Separator is the namespace separator of the config.
func (e *PolicyEvaluator) Separator() string {
	if s := e.ps.cfg.NamespaceSeparator; s != "" {
		return s
	}
	return config.DefaultNamespaceSeparator
}

// identityRedactor changes nothing.
type identityRedactor struct{}

func (identityRedactor) JSON(b []byte) ([]byte, int)   { return b, 0 }
func (identityRedactor) String(s string) (string, int) { return s, 0 }
