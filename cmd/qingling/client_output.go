package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"qingling/events"
	"qingling/handlers/client"
)

var actionNames = map[string]string{ // read-only lookup table
	events.ActReport: "上报", events.ActAmend: "更正", events.ActGrade: "定级", events.ActList: "挂牌督办",
	events.ActPlan: "整改方案", events.ActProgress: "整改进展", events.ActExtend: "延期", events.ActComplete: "整改完成",
	events.ActReject: "验收不合格", events.ActClear: "验收销号", events.ActReopen: "重新打开", events.ActWithdraw: "撤回",
}

func actionZh(a string) string { return actionNames[a] }

// typeZh names an event type by the action that records it.
func typeZh(typ string) string {
	for _, a := range events.Actions {
		if events.ActionType(a) == typ {
			return actionNames[a]
		}
	}
	return ""
}

var statusNames = map[events.Status]string{ // read-only lookup table
	events.StatusReported: "已上报", events.StatusPlanned: "已制定方案", events.StatusRectifying: "整改中",
	events.StatusAwaiting: "待验收", events.StatusCleared: "已销号", events.StatusWithdrawn: "已撤回",
}

func statusText(s events.Status) string { return statusNames[s] + " " + string(s) }

func gradeText(g string) string {
	switch g {
	case events.GradeMajor:
		return "重大 major"
	case events.GradeGeneral:
		return "一般 general"
	}
	return g
}

func (c *cli) sectorText(code string) string {
	if s, ok := c.cat.Sector(code); ok {
		return fmt.Sprintf("%s %s (%s)", s.NameZh, s.NameEn, code)
	}
	return code
}

// regionText is the region's path in Chinese with its code: 云南省 昆明市 五华区 (530102).
func (c *cli) regionText(code string) string {
	var names []string
	for g, ok := c.cat.Region(code); ok; g, ok = c.cat.Region(g.Parent) {
		names = append([]string{g.NameZh}, names...)
		if g.Parent == "" {
			break
		}
	}
	if len(names) == 0 {
		return code
	}
	return strings.Join(names, " ") + " (" + code + ")"
}

func (c *cli) regionShort(code string) string {
	if g, ok := c.cat.Region(code); ok {
		return g.NameZh + " " + code
	}
	return code
}

func sectorShort(c *cli, code string) string {
	if s, ok := c.cat.Sector(code); ok {
		return s.NameZh + " " + code
	}
	return code
}

func when(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return t.In(events.Shanghai).Format("2006-01-02 15:04:05")
}

func whenT(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.In(events.Shanghai).Format("2006-01-02 15:04:05")
}

func (c *cli) printResult(verb string, res client.Result) {
	head := fmt.Sprintf("%s %s", actionZh(verb), verb)
	if res.Replayed {
		head += "  (已记录过 already recorded: nothing appended)"
	} else {
		head += "  ✓"
	}
	fmt.Fprintln(c.stdout, head)
	c.printSummary(&res.Hazard)
}

func (c *cli) printSummary(h *client.Hazard) {
	w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "  隐患 hazard\t%s\n", h.ID)
	fmt.Fprintf(w, "  行业 sector\t%s\n", c.sectorText(h.Sector))
	fmt.Fprintf(w, "  地区 region\t%s\n", c.regionText(h.Region))
	fmt.Fprintf(w, "  状态 status\t%s\n", statusText(h.Status))
	grade := gradeText(h.Grade)
	if h.Criterion != "" {
		grade += "  " + h.Criterion
	}
	if h.Listed {
		grade += "  挂牌督办 listed (" + h.ListLevel + ")"
	}
	fmt.Fprintf(w, "  等级 grade\t%s\n", grade)
	if h.Deadline != "" {
		d := when(h.Deadline)
		if h.Overdue {
			d += "  逾期 OVERDUE"
		}
		fmt.Fprintf(w, "  期限 deadline\t%s\n", d)
	}
	fmt.Fprintf(w, "  版本 version\t%d  (seq %d)\n", h.Version, h.Seq)
	w.Flush()
}

func (c *cli) printHazard(h *client.Hazard) {
	fmt.Fprintf(c.stdout, "隐患 hazard %s\n", h.ID)
	c.printSummary(h)
	w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	if d := h.Details; d != nil {
		site := d.Site.Name
		if k := d.Site.Key(); k != "" {
			site += "  (" + k + ")"
		}
		fmt.Fprintf(w, "  单位 site\t%s\n", site)
		fmt.Fprintf(w, "  描述 description\t%s\n", strings.ReplaceAll(d.Description, "\n", " "))
		if d.CriterionZh != "" {
			fmt.Fprintf(w, "  判定 criterion\t%s\n", d.CriterionZh)
		}
		if d.Location != nil {
			fmt.Fprintf(w, "  位置 location\t%.5f, %.5f %s\n", d.Location.Lat, d.Location.Lon, d.Location.Address)
		}
		for _, e := range d.Evidence {
			fmt.Fprintf(w, "  证据 evidence\t%s  %s\n", e.SHA256, e.Name)
		}
	}
	fmt.Fprintf(w, "  发现 found\t%s  by %s\n", whenT(h.FoundAt.Time()), h.ReportedBy)
	fmt.Fprintf(w, "  记录 recorded\t%s\n", whenT(h.RecordedAt.Time()))
	if h.CompletedBy != "" {
		fmt.Fprintf(w, "  完成 completed\t%s  by %s\n", whenT(h.CompletedAt.Time()), h.CompletedBy)
	}
	if h.ClearedBy != "" {
		fmt.Fprintf(w, "  销号 cleared\t%s  by %s\n", whenT(h.ClearedAt.Time()), h.ClearedBy)
	}
	w.Flush()
}

func (c *cli) printHistory(id string, hist []client.HistoryItem) {
	fmt.Fprintf(c.stdout, "隐患 hazard %s — %d events\n", id, len(hist))
	w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "#\tseq\t发生 occurred_at\t记录 recorded_at\t事件 event\t操作人 actor")
	for i, h := range hist {
		fmt.Fprintf(w, "%d\t%d\t%s\t%s\t%s %s\t%s\n", i+1, h.Seq, when(h.OccurredAt), when(h.RecordedAt), typeZh(h.Type), h.Type, h.Actor)
	}
	w.Flush()
}

func (c *cli) printList(p client.Page) {
	w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "隐患 id\t行业 sector\t地区 region\t等级 grade\t状态 status\t期限 deadline\t")
	for _, h := range p.Items {
		flags := ""
		if h.Overdue {
			flags += " 逾期overdue"
		}
		if h.Listed {
			flags += " 挂牌listed"
		}
		dl := "—"
		if h.Deadline != "" {
			dl = when(h.Deadline)[:10]
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.ID, sectorShort(c, h.Sector), c.regionShort(h.Region), gradeText(h.Grade), statusText(h.Status), dl, flags)
	}
	w.Flush()
	fmt.Fprintf(c.stdout, "%d hazards", len(p.Items))
	if p.Next != "" {
		fmt.Fprintf(c.stdout, "; more with --cursor %s (or --all)", p.Next)
	}
	fmt.Fprintln(c.stdout)
}
