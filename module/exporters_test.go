package module

import "testing"

func TestExporters(t *testing.T) {
	requireHeaders(t)
	got, err := Exporters(testHeaders)
	if err != nil {
		t.Fatal(err)
	}
	for sym, want := range map[string]string{
		"_printk":            "vmlinux",
		"jbd2_journal_start": "jbd2",
		"snd_hda_codec_new":  "snd_hda_codec",
	} {
		if got[sym] != want {
			t.Errorf("Exporters[%s] = %q, want %q", sym, got[sym], want)
		}
	}
	if _, ok := got["bm_status_read"]; ok {
		t.Error("Exporters lists a symbol nobody exports")
	}
}
