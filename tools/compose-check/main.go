// Command compose-check loads compose files the way `docker compose config`
// does, with github.com/compose-spec/compose-go/v2 (the library Docker Compose
// itself uses), and exits non-zero on anything Compose would refuse: YAML
// errors, the Compose Specification's JSON schema, interpolation errors
// (${VAR:?message}), inconsistencies (depends_on, volumes or networks that
// are not declared, a service with neither image nor build) and duplicate
// container names. Any warning Compose would print (an unset variable, the
// obsolete `version` key, yes/no booleans) fails the check too.
//
// Usage: compose-check [-env NAME=VALUE]... [-print] FILE...
//
// Variables are interpolated from -env alone, never from the caller's
// environment or a .env file, so the result is the same on every machine:
// with no -env it is what an operator who sets nothing gets.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/sirupsen/logrus"
)

type envFlags []string

func (e *envFlags) String() string { return strings.Join(*e, ",") }

func (e *envFlags) Set(value string) error {
	if !strings.Contains(value, "=") {
		return fmt.Errorf("-env takes NAME=VALUE, got %q", value)
	}
	*e = append(*e, value)
	return nil
}

// warnings records what Compose would print as a warning.
type warnings struct{ messages []string }

func (w *warnings) Levels() []logrus.Level {
	return []logrus.Level{logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel, logrus.WarnLevel}
}

func (w *warnings) Fire(entry *logrus.Entry) error {
	w.messages = append(w.messages, entry.Message)
	return nil
}

func main() {
	var env envFlags
	flag.Var(&env, "env", "NAME=VALUE for interpolation (repeatable); nothing else is read")
	printModel := flag.Bool("print", false, "print the resolved project as YAML")
	flag.Parse()
	files := flag.Args()
	if len(files) == 0 {
		fmt.Fprintln(os.Stderr, "usage: compose-check [-env NAME=VALUE]... [-print] FILE...")
		os.Exit(2)
	}

	seen := &warnings{}
	logrus.SetOutput(os.Stderr)
	logrus.AddHook(seen)

	options, err := cli.NewProjectOptions(files,
		cli.WithWorkingDirectory(filepath.Dir(files[0])),
		cli.WithEnv(env),
		cli.WithResolvedPaths(true),
		cli.WithInterpolation(true),
		cli.WithNormalization(true),
		cli.WithConsistency(true),
	)
	if err != nil {
		fail(files, err)
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		fail(files, err)
	}
	if err := project.CheckContainerNameUnicity(); err != nil {
		fail(files, err)
	}
	if len(seen.messages) > 0 {
		fail(files, fmt.Errorf("compose warns: %s", strings.Join(seen.messages, "; ")))
	}

	if *printModel {
		out, err := project.MarshalYAML()
		if err != nil {
			fail(files, err)
		}
		os.Stdout.Write(out)
		return
	}
	names := project.ServiceNames()
	sort.Strings(names)
	fmt.Printf("%s: valid Compose file, project %q, services: %s\n",
		strings.Join(files, ", "), project.Name, strings.Join(names, ", "))
}

func fail(files []string, err error) {
	fmt.Fprintf(os.Stderr, "compose-check: %s: %v\n", strings.Join(files, ", "), err)
	os.Exit(1)
}
