// Package demo generates a realistic, deterministic sample history through the real command
// path, so that a newcomer (and the tests) see a living system.
package demo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"qingling/events"
	"qingling/handlers/app"
)

// Config of a sample.
type Config struct {
	Hazards int       // default 2000
	Seed    uint64    // default 2025
	Now     time.Time // the end of the simulated history
	Days    int       // how far back findings go, default 180
	Workers int       // default 8
	// Progress, when set, is called after each hazard with the number done.
	Progress func(done, total int)
}

var ns = uuid.MustParse("0d1f7e0c-5b8f-4f0e-9b59-2f3c6d8a9e11") // constant namespace

// Step is one command of the sample, with the record instant it is executed at.
type Step struct {
	At  time.Time
	Cmd *events.Command
}

// Plan builds every hazard's commands; the same config always gives the same plan.
func Plan(cat *events.Catalog, cfg Config) [][]Step {
	if cfg.Hazards == 0 {
		cfg.Hazards = 2000
	}
	if cfg.Seed == 0 {
		cfg.Seed = 2025
	}
	if cfg.Days == 0 {
		cfg.Days = 180
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	var counties []string
	for _, prov := range cat.Provinces {
		for _, pref := range cat.Children(prov) {
			counties = append(counties, cat.Children(pref)...)
		}
	}
	sectors := []struct {
		code   string
		weight int
	}{{"mine", 20}, {"chem", 18}, {"fireworks", 8}, {"trade", 25}, {"forest", 22}, {"gas", 7}}
	out := make([][]Step, cfg.Hazards)
	for i := range out {
		w := rng.IntN(100)
		sector := sectors[0].code
		for _, s := range sectors {
			if w < s.weight {
				sector = s.code
				break
			}
			w -= s.weight
		}
		out[i] = planOne(cat, rng, i, sector, counties[rng.IntN(len(counties))], cfg)
	}
	return out
}

func cmdID(i int, step string) string {
	return uuid.NewSHA1(ns, fmt.Appendf(nil, "%d/%s", i, step)).String()
}

func planOne(cat *events.Catalog, rng *rand.Rand, i int, sector, county string, cfg Config) []Step {
	_, pref, _ := cat.Path(county)
	g, _ := cat.Region(county)
	end := cfg.Now
	found := end.Add(-time.Duration(rng.Int64N(int64(cfg.Days) * 24 * int64(time.Hour))))
	major := rng.IntN(100) < 28
	grade, criterion := events.GradeGeneral, ""
	if major {
		grade = events.GradeMajor
		crit := cat.CriteriaOf(sector)
		criterion = crit[rng.IntN(len(crit))]
	}
	days := 3 + rng.IntN(12)
	if major {
		days = 20 + rng.IntN(70)
	}
	deadline := found.AddDate(0, 0, days)
	source := []string{"inspection", "inspection", "self-check", "third-party", "tip-off"}[rng.IntN(5)]
	n := 1 + rng.IntN(40)
	site := events.Site{Name: fmt.Sprintf("%s%s第%d号%s", g.NameZh, siteWord(sector), n, siteKind(sector))}
	inspector := "inspector-" + county
	rectifier := fmt.Sprintf("rectifier-%s-%02d", county, n)
	if sector != "forest" { // enterprises have a unified social credit code; forest places get a site id
		site.CreditCode = CreditCode(county, sector, n)
		rectifier = "rectifier-" + site.CreditCode
	}
	verifier := "verifier-" + pref
	if source == "self-check" {
		inspector = rectifier
	}
	at := found.Add(time.Duration(rng.IntN(48)) * time.Hour)
	if at.After(end) {
		at = end
	}
	hid := events.ReportID(cmdID(i, "report"))
	mk := func(step, action, who string, p any, occurred time.Time) Step {
		return Step{At: at, Cmd: &events.Command{Action: action, HazardID: hid, CommandID: cmdID(i, step), OccurredAt: occurred, Actor: events.Actor{ID: who}, Payload: p}}
	}
	steps := []Step{mk("report", events.ActReport, inspector, &events.Reported{Sector: sector, Region: county, Site: site, Grade: grade, Criterion: criterion,
		Description: fmt.Sprintf("%s：%s", siteKind(sector), describe(cat, sector, criterion, rng)), Source: source,
		Location: &events.Location{Lat: 22 + rng.Float64()*6, Lon: 98 + rng.Float64()*7}, Deadline: events.FormatInstant(deadline)}, found)}
	// how far the hazard got: 0 reported, 1 planned, 2 rectifying, 3 awaiting, 4 cleared, -1 withdrawn
	r := rng.IntN(100)
	stage := 4
	switch {
	case r < 40:
	case r < 58:
		stage = 3
	case r < 76:
		stage = 2
	case r < 86:
		stage = 1
	case r < 97:
		stage = 0
	default:
		stage = -1
	}
	advance := func(maxHours int) bool {
		next := at.Add(time.Duration(1+rng.IntN(maxHours)) * time.Hour)
		if next.After(end) {
			return false
		}
		at = next
		return true
	}
	add := func(step, action, who string, p func() any) bool {
		if !advance(24 * 6) {
			return false
		}
		steps = append(steps, mk(step, action, who, p(), at.Add(-time.Duration(rng.IntN(90))*time.Minute)))
		return true
	}
	if stage == -1 {
		add("withdraw", events.ActWithdraw, verifier, func() any { return &events.Withdrawn{Reason: "录入错误，重复登记"} })
		return steps
	}
	if major && rng.IntN(100) < 35 {
		add("list", events.ActList, verifier, func() any {
			return &events.Listed{Level: []string{"county", "prefecture", "province"}[rng.IntN(3)],
				Authority: g.NameZh + "安全生产委员会办公室", Document: fmt.Sprintf("安委办督〔%d〕%d号", found.Year(), 1+rng.IntN(60)), Deadline: events.FormatInstant(later(deadline.AddDate(0, 0, 10), at.AddDate(0, 0, 3)))}
		})
	}
	if stage >= 1 && (major || rng.IntN(2) == 0) {
		if !add("plan", events.ActPlan, rectifier, func() any {
			return &events.Planned{Responsible: "企业主要负责人", Measures: "停产整改，更换设备并完善监测", Funds: fmt.Sprintf("%d万元", 5+rng.IntN(200)),
				Deadline: events.FormatInstant(later(deadline, at.AddDate(0, 0, 3))), Contingency: "制定专项应急预案，整改期间设置警戒"}
		}) {
			return steps
		}
	} else if stage >= 1 && !major {
		stage = max(stage, 2) // a general hazard may be rectified without a written plan
	}
	if rng.IntN(100) < 10 && stage >= 1 {
		add("extend", events.ActExtend, verifier, func() any {
			return &events.Extended{Deadline: events.FormatInstant(later(deadline, at).AddDate(0, 0, 30)), Reason: "设备采购周期长，经审批延期"}
		})
	}
	if stage >= 2 && !add("progress", events.ActProgress, rectifier, func() any { return &events.Progressed{Note: "已完成主要整改措施", Percent: 40 + rng.IntN(50)} }) {
		return steps
	}
	if stage >= 3 && !add("complete", events.ActComplete, rectifier, func() any { return &events.Completed{Note: "整改完成，申请验收"} }) {
		return steps
	}
	if stage >= 4 {
		if rng.IntN(100) < 12 {
			if !add("reject", events.ActReject, verifier, func() any { return &events.VerifyFailed{Reason: "验收不合格：整改不彻底"} }) ||
				!add("complete2", events.ActComplete, rectifier, func() any { return &events.Completed{Note: "复查问题已整改"} }) {
				return steps
			}
		}
		add("clear", events.ActClear, verifier, func() any { return &events.Cleared{Method: "on-site", Note: "现场验收合格，予以销号"} })
	}
	return steps
}

func siteWord(sector string) string {
	return map[string]string{"mine": "矿业", "chem": "化工", "fireworks": "烟花", "trade": "工贸", "forest": "林区", "gas": "燃气"}[sector]
}

func siteKind(sector string) string {
	return map[string]string{"mine": "矿山", "chem": "化工有限公司", "fireworks": "烟花爆竹厂", "trade": "制造厂", "forest": "林地片区", "gas": "燃气站"}[sector]
}

func describe(cat *events.Catalog, sector, criterion string, rng *rand.Rand) string {
	if k, ok := cat.Criterion(criterion); ok {
		return k.SubjectZh
	}
	general := map[string][]string{
		"mine": {"井下巷道支护不到位", "安全警示标志缺失"}, "chem": {"储罐区消防通道堵塞", "作业票证填写不规范"},
		"fireworks": {"工房内药物存放超量", "防静电设施检测过期"}, "trade": {"粉尘清扫不及时", "有限空间作业审批缺失"},
		"forest": {"坟区祭祀用火隐患", "林区输电线路下方可燃物未清理", "林缘农事用火"}, "gas": {"燃气管道标识缺失", "钢瓶检验过期"},
	}[sector]
	return general[rng.IntN(len(general))]
}

// Load executes the plan through svc's command path, hazards in parallel, each hazard's
// steps in order at their simulated record instants. It returns the number of commands.
func Load(ctx context.Context, base *app.Service, plan [][]Step, cfg Config) (int, error) {
	if cfg.Workers == 0 {
		cfg.Workers = 8
	}
	var (
		next, done, n atomic.Int64
		wg            sync.WaitGroup
		firstErr      error
		mu            sync.Mutex
	)
	for w := 0; w < cfg.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var now time.Time
			svc := &app.Service{Catalog: base.Catalog, Index: base.Index, Log: base.Log, Home: base.Home, Evidence: base.Evidence, Clock: func() time.Time { return now }}
			for {
				i := int(next.Add(1)) - 1
				if i >= len(plan) || ctx.Err() != nil {
					return
				}
				for _, st := range plan[i] {
					now = st.At
					c := *st.Cmd
					if _, err := svc.Execute(ctx, &c); err != nil {
						mu.Lock()
						if firstErr == nil {
							firstErr = fmt.Errorf("demo hazard %d %s: %w", i, st.Cmd.Action, err)
						}
						mu.Unlock()
						return
					}
					n.Add(1)
				}
				if d := done.Add(1); cfg.Progress != nil {
					cfg.Progress(int(d), len(plan))
				}
			}
		}()
	}
	wg.Wait()
	return int(n.Load()), firstErr
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// CreditCode is the demo's unified social credit code of site n of a sector in a county
// (checksum valid, GB 32100-2015).
func CreditCode(county, sector string, n int) string {
	const chars = "0123456789ABCDEFGHJKLMNPQRTUWXY"
	h := uuid.NewSHA1(ns, fmt.Appendf(nil, "site/%s/%s/%d", county, sector, n))
	code := []byte("91" + county)
	for i := 0; i < 9; i++ {
		code = append(code, chars[int(h[i])%31])
	}
	weights := [17]int{1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28}
	sum := 0
	for i, c := range code {
		sum += strings.IndexByte(chars, c) * weights[i]
	}
	return string(append(code, chars[(31-sum%31)%31]))
}
