// UI strings. Chinese (简体中文) is the default; `?lang=en` or the language button switches,
// and the choice is remembered in this browser.

const STRINGS = {
  zh: {
    title: '回放',
    project: '项目编号',
    session: '场次',
    room: '场地',
    kind: '类型',
    started: '开始',
    stopped: '结束',
    live: '录制中',
    play: '播放',
    pause: '暂停',
    speed: '倍速',
    seek: '跳转到',
    seekPlaceholder: '如 10:32:05',
    seekGo: '跳转',
    sound: '声音',
    soundNone: '静音',
    chain: '证据链',
    chainChecking: '正在校验…',
    chainIntact: '已校验：完整',
    chainBroken: '校验失败',
    chainAt: '源 {source} 第 {seq} 段：{problem}',
    chainUnavailable: '无法校验',
    segments: '段',
    gaps: '中断',
    gap: '无信号（中断）',
    gapReason: '中断原因',
    noMedia: '该时刻无录像',
    notHls: '此录像格式（{template}）不能在浏览器中回放，请下载证据包',
    playbackError: '回放出错：{detail}',
    download: '下载 MP4',
    audioOnly: '仅音频',
    loginRequired: '请先登录（会话已过期或未登录）',
    confidential: '本场为保密的评标/评审录像。回放须填写理由，理由将记入审计日志。',
    reason: '理由',
    reasonGo: '确认并回放',
    reasonRequired: '请填写理由',
    badTime: '无法识别的时间：{value}（格式 时:分:秒，或完整日期时间）',
    outside: '{value} 不在本场录像时间范围内',
    notFound: '找不到该场次：{detail}',
    loadError: '加载失败：{detail}',
    timezone: '时区',
    language: 'English',
    kinds: { bid_opening: '开标', evaluation: '评标', negotiation: '谈判', auction: '拍卖', other: '其他' },
    states: { recording: '录制中', stopping: '正在停止', stopped: '已结束', failed: '失败' },
  },
  en: {
    title: 'Replay',
    project: 'Project',
    session: 'Session',
    room: 'Room',
    kind: 'Kind',
    started: 'Started',
    stopped: 'Stopped',
    live: 'recording',
    play: 'Play',
    pause: 'Pause',
    speed: 'Speed',
    seek: 'Go to',
    seekPlaceholder: 'e.g. 10:32:05',
    seekGo: 'Go',
    sound: 'Sound',
    soundNone: 'muted',
    chain: 'Evidence chain',
    chainChecking: 'verifying…',
    chainIntact: 'verified: intact',
    chainBroken: 'verification failed',
    chainAt: 'source {source} segment {seq}: {problem}',
    chainUnavailable: 'cannot verify',
    segments: 'segments',
    gaps: 'gaps',
    gap: 'no signal (gap)',
    gapReason: 'gap reason',
    noMedia: 'nothing recorded at this time',
    notHls: 'this recording’s format ({template}) does not play in a browser; export an evidence package',
    playbackError: 'playback error: {detail}',
    download: 'Download MP4',
    audioOnly: 'audio only',
    loginRequired: 'please log in first (not logged in, or the session expired)',
    confidential:
      'This is a confidential evaluation-room recording. Replay needs a reason, which is written to the audit trail.',
    reason: 'Reason',
    reasonGo: 'Confirm and replay',
    reasonRequired: 'a reason is required',
    badTime: 'cannot read the time {value} (use hh:mm:ss or a full date and time)',
    outside: '{value} is outside this session’s recording',
    notFound: 'no such session: {detail}',
    loadError: 'loading failed: {detail}',
    timezone: 'Time zone',
    language: '中文',
    kinds: { bid_opening: 'bid opening', evaluation: 'evaluation', negotiation: 'negotiation', auction: 'auction', other: 'other' },
    states: { recording: 'recording', stopping: 'stopping', stopped: 'stopped', failed: 'failed' },
  },
};

export function chooseLanguage() {
  const asked = new URLSearchParams(location.search).get('lang');
  const lang = asked || localStorage.getItem('witness.lang') || 'zh';
  return STRINGS[lang] ? lang : 'zh';
}

export function rememberLanguage(lang) {
  localStorage.setItem('witness.lang', lang);
}

/// `t('chainAt', {seq: 3})`: the string in the current language with its `{fields}` filled in.
export function translator(lang) {
  const table = STRINGS[lang];
  return (key, fields = {}) => {
    const s = key.split('.').reduce((o, k) => (o == null ? o : o[k]), table) ?? key;
    return String(s).replace(/\{(\w+)\}/g, (_, f) => (f in fields ? String(fields[f]) : `{${f}}`));
  };
}
