// Package argrules compiles and evaluates argument rules: CEL expressions
// (cel.dev/cel-go, the language Kubernetes and Envoy use) over a tool
// call's arguments, its principal and roles, that allow or deny the call.
//
// An expression sees:
//
//	args       map(string, dyn)  the call's arguments ({} when absent)
//	principal  string            the caller's principal name
//	roles      list(string)      the caller's roles
//	tool       string            the tool as its server knows it
//
// A deny rule refuses the call when its expression is true; an allow rule
// refuses it when its expression is false. An expression that fails to
// evaluate (a missing key, a wrong type) refuses the call: rules fail
// closed.
package argrules

import (
	"fmt"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/interpreter"
)

// env is the one CEL environment every rule is compiled in.
var env = func() *cel.Env {
	e, err := cel.NewEnv(
		cel.Variable("args", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("principal", cel.StringType),
		cel.Variable("roles", cel.ListType(cel.StringType)),
		cel.Variable("tool", cel.StringType),
	)
	if err != nil {
		panic("argrules: building the CEL environment: " + err.Error())
	}
	return e
}()

// Rule is one compiled rule. It is safe for concurrent use.
type Rule struct {
	// Name identifies the rule in records and metrics: the config key it
	// came from, e.g. "servers[0].tools.read.argument_rules[1]".
	Name string
	// Expr is the expression as configured.
	Expr string
	// Message, when set, is what a refused caller is told.
	Message string
	deny    bool
	prg     cel.Program
}

// Compile compiles expr as a deny rule (deny true) or an allow rule; the
// expression must be boolean. Errors are CEL's, with line and column.
func Compile(name, expr string, deny bool, message string) (*Rule, error) {
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, iss.Err()
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, fmt.Errorf("%q is of type %s, want bool", expr, ast.OutputType())
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, fmt.Errorf("planning %q: %w", expr, err)
	}
	return &Rule{Name: name, Expr: expr, Message: message, deny: deny, prg: prg}, nil
}

// Input is what a rule is evaluated on.
type Input struct {
	Args      map[string]any
	Principal string
	Roles     []string
	Tool      string
}

// activation is Input as CEL variables, without building a map per call.
type activation struct{ in *Input }

func (a activation) ResolveName(name string) (any, bool) {
	switch name {
	case "args":
		if a.in.Args == nil {
			return map[string]any{}, true
		}
		return a.in.Args, true
	case "principal":
		return a.in.Principal, true
	case "roles":
		if a.in.Roles == nil {
			return []string{}, true
		}
		return a.in.Roles, true
	case "tool":
		return a.in.Tool, true
	}
	return nil, false
}

func (activation) Parent() interpreter.Activation { return nil }

// Refuses reports whether the rule refuses the call, and why: an
// evaluation error refuses it too (reason names the error).
func (r *Rule) Refuses(in *Input) (refuse bool, reason string) {
	out, _, err := r.prg.Eval(activation{in})
	if err != nil {
		return true, fmt.Sprintf("rule %s could not be evaluated: %v", r.Name, err)
	}
	b, ok := out.Value().(bool)
	if !ok {
		return true, fmt.Sprintf("rule %s gave %v, not a bool", r.Name, out.Value())
	}
	if b == r.deny {
		if r.Message != "" {
			return true, r.Message
		}
		if r.deny {
			return true, fmt.Sprintf("denied by rule %s: %s", r.Name, r.Expr)
		}
		return true, fmt.Sprintf("not allowed by rule %s: %s", r.Name, r.Expr)
	}
	return false, ""
}
