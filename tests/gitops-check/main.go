// gitops-check reads a rendered site repository the way Flux's kustomize-controller does and
// asks the API server whether it would accept every object.
//
// For each Flux Kustomization in gitops/flux/*.yaml, in file order (the order of dependsOn),
// it builds spec.path with Flux's own kustomize library (github.com/fluxcd/pkg/kustomize: the
// generator, then SecureBuild on a copy of the repository, as the controller does on its
// artifact), then hands the objects to Flux's server-side apply engine
// (github.com/fluxcd/pkg/ssa). As in the controller's staged apply, cluster definitions (CRDs,
// Namespaces, ClusterRoles) are applied for real and waited for, since nothing after them can be
// checked without them; every other object is applied as a server-side dry run.
//
// With -apply, a Kustomization whose objects were all accepted is then applied for real and its
// spec.healthChecks (every object with spec.wait) are waited for, as the controller does before
// the Kustomizations that depend on it; with -retry, refused objects are checked again until the
// duration has passed, as the controller retries a failed Kustomization.
//
// It prints one JSON line per object on stdout:
//
//	{"kustomization":"...","path":"...","kind":"...","namespace":"...","name":"...","action":"...","error":"..."}
//
// and exits 1 if any object was refused, 2 on a usage or build error.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/polling"
	"github.com/fluxcd/cli-utils/pkg/object"
	"github.com/fluxcd/pkg/kustomize"
	"github.com/fluxcd/pkg/ssa"
	ssautils "github.com/fluxcd/pkg/ssa/utils"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// The field manager kustomize-controller applies with.
var owner = ssa.Owner{Field: "kustomize-controller", Group: "kustomize.toolkit.fluxcd.io"}

var options struct {
	apply bool
	retry time.Duration
}

type result struct {
	Kustomization string `json:"kustomization"`
	Path          string `json:"path"`
	Kind          string `json:"kind"`
	Namespace     string `json:"namespace,omitempty"`
	Name          string `json:"name"`
	Action        string `json:"action,omitempty"`
	Error         string `json:"error,omitempty"`
}

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the cluster to check against")
	repo := flag.String("repo", "", "root of the rendered site repository (holds gitops/)")
	flag.BoolVar(&options.apply, "apply", false, "apply each accepted Kustomization and wait for its health checks")
	flag.DurationVar(&options.retry, "retry", 0, "check a Kustomization with refused objects again until this has passed")
	flag.Parse()
	if *repo == "" || *kubeconfig == "" {
		fmt.Fprintln(os.Stderr, "usage: gitops-check -repo DIR [-kubeconfig FILE]")
		os.Exit(2)
	}
	refused, err := run(*kubeconfig, *repo, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gitops-check: %v\n", err)
		os.Exit(2)
	}
	if refused > 0 {
		fmt.Fprintf(os.Stderr, "gitops-check: %d object(s) refused\n", refused)
		os.Exit(1)
	}
}

func run(kubeconfig, repo string, out io.Writer) (int, error) {
	kustomizations, err := fluxKustomizations(filepath.Join(repo, "gitops", "flux"))
	if err != nil {
		return 0, err
	}
	if len(kustomizations) == 0 {
		return 0, fmt.Errorf("no Flux Kustomization in %s", filepath.Join(repo, "gitops", "flux"))
	}
	config, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return 0, fmt.Errorf("reading kubeconfig %s: %w", kubeconfig, err)
	}
	manager, err := resourceManager(config)
	if err != nil {
		return 0, err
	}
	encoder := json.NewEncoder(out)
	refused := 0
	for _, k := range kustomizations {
		objects, err := build(repo, k)
		if err != nil {
			return refused, fmt.Errorf("building Kustomization %s (%s): %w", k.GetName(), specPath(k), err)
		}
		ctx := context.Background()
		deadline := time.Now().Add(options.retry)
		results := check(ctx, manager, k, objects)
		for failed(results) && time.Now().Before(deadline) {
			time.Sleep(2 * time.Second)
			results = check(ctx, manager, k, objects)
		}
		if options.apply && !failed(results) {
			if err := apply(ctx, manager, k, objects); err != nil {
				return refused, fmt.Errorf("applying Kustomization %s: %w", k.GetName(), err)
			}
		}
		for _, r := range results {
			if r.Error != "" {
				refused++
			}
			if err := encoder.Encode(r); err != nil {
				return refused, err
			}
		}
	}
	return refused, nil
}

func resourceManager(config *rest.Config) (*ssa.ResourceManager, error) {
	httpClient, err := rest.HTTPClientFor(config)
	if err != nil {
		return nil, err
	}
	mapper, err := apiutil.NewDynamicRESTMapper(config, httpClient)
	if err != nil {
		return nil, err
	}
	c, err := client.New(config, client.Options{HTTPClient: httpClient, Mapper: mapper})
	if err != nil {
		return nil, err
	}
	poller := polling.NewStatusPoller(c, mapper, polling.Options{})
	return ssa.NewResourceManager(c, poller, owner), nil
}

// fluxKustomizations reads the kustomize.toolkit.fluxcd.io Kustomizations of every file in dir,
// files in name order and objects in file order.
func fluxKustomizations(dir string) ([]*unstructured.Unstructured, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var found []*unstructured.Unstructured
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		objects, err := ssautils.ReadObjects(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", f, err)
		}
		for _, o := range objects {
			if o.GetKind() == "Kustomization" && o.GroupVersionKind().Group == "kustomize.toolkit.fluxcd.io" {
				found = append(found, o)
			}
		}
	}
	return found, nil
}

func specPath(k *unstructured.Unstructured) string {
	p, _, _ := unstructured.NestedString(k.Object, "spec", "path")
	return p
}

// build does what kustomize-controller does with a Kustomization's path in its artifact: on a
// copy of the repository (the generator writes kustomization.yaml files), generate, then build
// securely inside the copy.
func build(repo string, k *unstructured.Unstructured) ([]*unstructured.Unstructured, error) {
	work, err := os.MkdirTemp("", "gitops-check-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	if err := os.CopyFS(work, os.DirFS(repo)); err != nil {
		return nil, fmt.Errorf("copying %s: %w", repo, err)
	}
	dir := filepath.Join(work, specPath(k))
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("spec.path %q does not exist in the repository", specPath(k))
	}
	generator := kustomize.NewGeneratorWithIgnore(work, "", *k)
	action, err := generator.WriteFile(dir, kustomize.WithSaveOriginalKustomization())
	if err != nil {
		return nil, err
	}
	defer func() { _ = kustomize.CleanDirectory(dir, action) }()
	resources, err := kustomize.SecureBuild(work, dir, false)
	if err != nil {
		return nil, err
	}
	yaml, err := resources.AsYaml()
	if err != nil {
		return nil, err
	}
	return ssautils.ReadObjects(bufio.NewReader(bytes.NewReader(yaml)))
}

// check applies the cluster definitions for real and waits for them, then dry-runs the rest.
func check(ctx context.Context, manager *ssa.ResourceManager, k *unstructured.Unstructured,
	objects []*unstructured.Unstructured) []result {
	base := result{Kustomization: k.GetName(), Path: specPath(k)}
	var definitions, rest []*unstructured.Unstructured
	for _, o := range objects {
		if ssautils.IsClusterDefinition(o) {
			definitions = append(definitions, o)
		} else {
			rest = append(rest, o)
		}
	}
	var results []result
	if len(definitions) > 0 {
		options := ssa.DefaultApplyOptions()
		changes, err := manager.ApplyAll(ctx, definitions, options)
		if err == nil {
			err = manager.WaitForSet(changes.ToObjMetadataSet(),
				ssa.WaitOptions{Interval: time.Second, Timeout: options.WaitTimeout})
		}
		for _, o := range definitions {
			r := describe(base, o)
			if err != nil {
				r.Error = err.Error()
			} else {
				r.Action = "applied"
			}
			results = append(results, r)
		}
	}
	for _, o := range rest {
		r := describe(base, o)
		entry, _, _, err := manager.Diff(ctx, o, ssa.DefaultDiffOptions())
		if err != nil {
			r.Error = err.Error()
		} else {
			r.Action = string(entry.Action)
		}
		results = append(results, r)
	}
	return results
}

func failed(results []result) bool {
	for _, r := range results {
		if r.Error != "" {
			return true
		}
	}
	return false
}

// apply applies every object of the Kustomization in the controller's stages, then waits for
// what it would wait for: every object with spec.wait, else the spec.healthChecks.
func apply(ctx context.Context, manager *ssa.ResourceManager, k *unstructured.Unstructured,
	objects []*unstructured.Unstructured) error {
	options := ssa.DefaultApplyOptions()
	changes, err := manager.ApplyAllStaged(ctx, objects, options)
	if err != nil {
		return err
	}
	waitAll, _, _ := unstructured.NestedBool(k.Object, "spec", "wait")
	set := changes.ToObjMetadataSet()
	if !waitAll {
		checks, _, _ := unstructured.NestedSlice(k.Object, "spec", "healthChecks")
		set = set[:0]
		for _, c := range checks {
			check, ok := c.(map[string]any)
			if !ok {
				return fmt.Errorf("spec.healthChecks holds a %T, not an object", c)
			}
			ref := &unstructured.Unstructured{Object: map[string]any{}}
			ref.SetAPIVersion(fmt.Sprint(check["apiVersion"]))
			ref.SetKind(fmt.Sprint(check["kind"]))
			ref.SetName(fmt.Sprint(check["name"]))
			if ns, ok := check["namespace"].(string); ok {
				ref.SetNamespace(ns)
			}
			set = append(set, object.UnstructuredToObjMetadata(ref))
		}
	}
	if len(set) == 0 {
		return nil
	}
	return manager.WaitForSet(set, ssa.WaitOptions{Interval: time.Second, Timeout: 2 * time.Minute})
}

func describe(base result, o *unstructured.Unstructured) result {
	base.Kind = o.GetKind()
	base.Namespace = o.GetNamespace()
	base.Name = o.GetName()
	return base
}
