package main

import (
	"os"
	"strings"
	"testing"
)

// TestPackagedUnit rewrites the repository's unit and expects the package's
// form: /usr/bin, the stardust user, the --check before the start.
func TestPackagedUnit(t *testing.T) {
	src, err := os.ReadFile("../../conf/systemd/stardust.service")
	if err != nil {
		t.Fatal(err)
	}
	unit, err := packagedUnit(string(src))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\n[Unit]\n", "\n[Install]\nWantedBy=multi-user.target",
		"\nUser=stardust\nGroup=stardust\n",
		"\nExecStartPre=/usr/bin/stardust --config ${STARDUST_CONFIG} --check\n",
		"\nExecStart=/usr/bin/stardust --config ${STARDUST_CONFIG}\n",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("packaged unit lacks %q:\n%s", want, unit)
		}
	}
	for _, gone := range []string{"DynamicUser", "/usr/local", "install -m", "A user of its own"} {
		if strings.Contains(unit, gone) {
			t.Errorf("packaged unit still has %q:\n%s", gone, unit)
		}
	}
	for _, broken := range []string{
		strings.ReplaceAll(string(src), "DynamicUser=yes", "DynamicUser=no"),
		strings.ReplaceAll(string(src), "/usr/local/bin/stardust", "/opt/stardust"),
		strings.ReplaceAll(string(src), "[Unit]", "[Unti]"),
	} {
		if _, err := packagedUnit(broken); err == nil {
			t.Error("a unit that drifted from what packagedUnit rewrites was accepted")
		}
	}
}

func TestLicenseName(t *testing.T) {
	for _, c := range []struct{ text, want string }{
		{"Apache License\n Version 2.0, January 2004", "Apache-2.0"},
		{"Copyright (c) 2013 X\n\nPermission is hereby granted, free of charge, to any person", "Expat"},
		{"Redistribution and use in source and binary forms, with or without\nmodification ... Neither the name of", "BSD-3-clause"},
		{"Redistribution and use in source and binary forms, with or without", "BSD-2-clause"},
		{"Do what you like.", "other"},
	} {
		if got := licenseName(c.text); got != c.want {
			t.Errorf("licenseName(%q) = %q, want %q", c.text, got, c.want)
		}
	}
	if got := copyrightLine("The MIT License\n\nCopyright (c) 2013 TOML authors\n", "m"); got != "2013 TOML authors" {
		t.Errorf("copyrightLine = %q", got)
	}
	if got := licenseText("a\r\n\r\n  b  \n"); got != " a\n .\n   b\n" {
		t.Errorf("licenseText = %q", got)
	}
	if got := escapeModulePath("github.com/BurntSushi/toml"); got != "github.com/!burnt!sushi/toml" {
		t.Errorf("escapeModulePath = %q", got)
	}
}

// TestRepositoryLicense checks that the repository's LICENSE is the one the
// package's metadata and copyright file name, and that the README names it.
func TestRepositoryLicense(t *testing.T) {
	license, err := os.ReadFile("../../LICENSE")
	if err != nil {
		t.Fatal(err)
	}
	if got := licenseName(string(license)); got != "Apache-2.0" {
		t.Errorf("LICENSE is %q, want Apache-2.0 (as the package's metadata says)", got)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "Apache License, Version 2.0: see\n[LICENSE](LICENSE)") {
		t.Error("README.md does not name the license and link LICENSE")
	}
}

// TestScriptsCoverConfigs: postinst makes every installed configuration
// readable by the stardust group only, and postrm's purge forgets each
// override, so that a configuration added to the package is not left
// world-readable.
func TestScriptsCoverConfigs(t *testing.T) {
	for _, script := range []string{"postinst", "postrm"} {
		b, err := scripts.ReadFile("debian/" + script)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range configs {
			if !strings.Contains(string(b), "/etc/stardust/"+name+" ") && !strings.Contains(string(b), "/etc/stardust/"+name+";") {
				t.Errorf("debian/%s does not name /etc/stardust/%s", script, name)
			}
		}
	}
}
