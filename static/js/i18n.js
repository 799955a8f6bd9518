// Every user-visible string of the browser client, in Chinese (default) and English.
//
// HTML carries keys in data-i18n (text), data-i18n-placeholder, data-i18n-title and
// data-i18n-aria-label; scripts call t(key, params). The choice is remembered in localStorage.

const STORAGE_KEY = "yitang.lang";
export const LANGS = ["zh", "en"];

const STRINGS = {
  zh: {
    "app.name": "议堂",
    "app.tagline": "多级远程视频协商",
    "lang.switch": "English",
    "lang.switch_title": "Switch to English",

    "index.title": "议堂 · 多级远程视频协商",
    "index.intro": "请使用邀请中的参会链接加入会议。",
    "index.organizer_link": "会务管理（组织者）",

    "level.national": "全国",
    "level.provincial": "省",
    "level.city": "市",
    "level.county": "区县",
    "level_group.national": "全国会场",
    "level_group.provincial": "省级会场",
    "level_group.city": "市级会场",
    "level_group.county": "区县会场",
    "role.host": "主持人",
    "role.member": "委员",
    "role.guest": "特邀嘉宾",
    "role.observer": "旁听",
    "venue.main": "主会场",

    "join.page_title": "议堂 · 加入会议",
    "prejoin.heading": "加入协商会议",
    "prejoin.who": "{name} · {role}",
    "prejoin.camera": "摄像头",
    "prejoin.microphone": "麦克风",
    "prejoin.mic_level": "麦克风音量",
    "prejoin.enter_mic_muted": "入会时关闭麦克风",
    "prejoin.enter_camera_off": "入会时关闭摄像头",
    "prejoin.auto_unmute": "获得发言权时自动打开麦克风",
    "prejoin.enter": "进入会议",
    "prejoin.entering": "正在进入…",
    "prejoin.observer_note": "您以旁听身份参加：可以观看和收听，不发布音视频，不参与发言和交流。",
    "prejoin.camera_off_preview": "摄像头已关闭",
    "prejoin.no_devices": "未找到可用的摄像头或麦克风。您仍可进入会议，但无法发言。",
    "prejoin.device_error": "无法打开摄像头或麦克风：{message}",
    "prejoin.device_default": "默认设备",
    "prejoin.device_none": "无",
    "prejoin.device_unnamed": "设备 {n}",
    "prejoin.token_missing": "链接中缺少参会凭证，请使用邀请中的完整链接。",
    "prejoin.token_expired_local": "该参会链接似乎已过期，仍将尝试连接。",
    "prejoin.checking": "正在核对参会链接…",
    "prejoin.recorded": "本次会议正在录制，进入后您的发言和画面将被录入会议档案。",
    "prejoin.locked": "会议已锁定：主持人准许后才能进入。",

    "conn.connecting": "正在连接",
    "conn.connected": "已连接",
    "conn.reconnecting": "正在重连",
    "conn.closed": "已断开",
    "conn.idle": "未连接",
    "banner.reconnecting": "网络连接中断，正在重新连接…",
    "banner.reconnected": "已重新连接，会议状态已更新。",
    "banner.media_restarting": "正在恢复音视频连接…",
    "banner.media_restored": "音视频连接已恢复。",

    "rec.on": "录制中",
    "stage.speaking": "发言中",
    "stage.host": "主持人",
    "stage.waiting_host": "等待主持人入会",
    "stage.countdown": "剩余 {time}",
    "stage.you": "（我）",
    "tiles.empty": "暂无其他参会者",
    "tile.you": "我",
    "tile.mic_off": "麦克风已关闭",
    "tile.camera_off": "摄像头已关闭",
    "tile.hand_raised": "已申请发言",
    "tile.speaking": "正在说话",

    "quality.good": "网络良好",
    "quality.fair": "网络一般",
    "quality.poor": "网络较差",
    "quality.unknown": "网络状态未知",
    "quality.offline": "已断线",
    "quality.details": "丢包 {loss}% · 延迟 {rtt} 毫秒 · {fps} 帧/秒",

    "tabs.label": "会议面板",
    "tabs.agenda": "议程",
    "tabs.queue": "发言",
    "tabs.people": "参会",
    "tabs.chat": "交流",

    "agenda.empty": "本次会议未设置议程",
    "agenda.current": "当前议程",
    "agenda.planned": "拟发言：{names}",
    "list.separator": "、",
    "agenda.duration": "{minutes} 分钟",
    "agenda.go": "转到此项",

    "queue.floor": "当前发言",
    "queue.nobody": "目前无人发言，主持人主持会议",
    "queue.heading": "申请发言（按举手顺序）",
    "queue.empty": "暂无发言申请",
    "queue.untimed": "不限时",
    "queue.grant": "准予发言",
    "queue.skip": "跳过",
    "queue.position": "第 {n} 位",

    "people.heading": "参会名单",
    "people.count": "{n} 人在线",
    "people.absent": "未入会",
    "people.connected": "在线",
    "people.mute_audio": "请其静音",
    "people.mute_video": "请其关闭摄像头",
    "people.remove": "移出会议",
    "people.grant": "给予发言权",
    "people.you": "（我）",

    "chat.empty": "暂无消息",
    "chat.placeholder": "输入消息，回车发送",
    "chat.send": "发送",
    "chat.readonly": "旁听者不能发送消息",
    "chat.label": "交流消息",

    "event.joined": "{name} 进入会议",
    "event.left": "{name} 离开会议",
    "event.hand_raised": "{name} 申请发言",
    "event.floor_granted": "{name} 获得发言权",
    "event.floor_revoked": "{name} 的发言结束",
    "event.floor_expired": "{name} 的发言时间已到",
    "event.agenda_advanced": "议程进入：{title}",
    "event.locked": "会议已锁定",
    "event.unlocked": "会议已解除锁定",
    "event.session_ended": "会议已结束",

    "host.console": "主持台",
    "host.time_limit": "发言时限",
    "host.limit_none": "不限时",
    "host.limit_minutes": "{n} 分钟",
    "host.next_speaker": "下一位发言",
    "host.revoke": "收回发言权",
    "host.next_item": "下一项议程",
    "host.lock": "锁定会议",
    "host.unlock": "解除锁定",
    "host.locked_note": "已锁定：新参会者不能进入",
    "host.end": "结束会议",
    "host.record_start": "开始录制",
    "host.record_stop": "停止录制",
    "host.record_started": "已开始录制",
    "host.record_stopped": "录制已停止，正在生成会议视频",
    "host.record_failed": "录制失败（会议继续）：{error}",
    "event.recording_started": "开始录制",
    "event.recording_resumed": "录制继续（服务器切换后）",
    "host.record_resumed": "会议已切换到另一台服务器，录制继续进行（中断期间的内容缺失）",
    "event.recording_stopped": "录制结束",
    "event.recording_failed": "录制失败",
    "error.already_recording": "已在录制中。",
    "error.not_recording": "当前没有在录制。",
    "error.archive_unwritable": "存档目录无法写入，未能开始录制。",
    "error.no_media": "还没有音视频，无法开始录制。",
    "host.end_confirm_title": "结束会议",
    "host.end_confirm_text": "确定为所有参会者结束本次会议吗？结束后不能恢复。",
    "host.remove_confirm_title": "移出参会者",
    "host.remove_confirm_text": "确定将 {name} 移出本次会议吗？其本次会议内不能再进入。",
    "host.floor_status": "发言：{name}",
    "host.floor_none": "发言：无（主持人）",
    "host.granted": "已准予 {name} 发言",
    "host.mute_sent": "已请 {name} 关闭{kind}",
    "host.removed_done": "已将 {name} 移出会议",
    "kind.audio": "麦克风",
    "kind.video": "摄像头",

    "controls.label": "会议控制",
    "controls.mic_on": "关闭麦克风",
    "controls.mic_off": "打开麦克风",
    "controls.cam_on": "关闭摄像头",
    "controls.cam_off": "打开摄像头",
    "controls.raise_hand": "申请发言",
    "controls.lower_hand": "取消申请",
    "controls.yield": "结束发言",
    "controls.leave": "离开会议",
    "controls.auto_unmute": "获得发言权时打开麦克风",
    "controls.observer": "旁听模式",
    "controls.more": "更多",

    "floor.you_have": "您已获得发言权",
    "floor.you_have_mic": "您已获得发言权，麦克风已打开",
    "floor.you_have_hint": "您已获得发言权，请打开麦克风发言",
    "floor.ended": "您的发言已结束",
    "floor.countdown": "剩余时间 {time}",
    "floor.untimed": "不限时",

    "mute.requested_audio": "主持人请您静音，麦克风已关闭。",
    "mute.requested_video": "主持人请您关闭摄像头，摄像头已关闭。",

    "media.publish_failed": "音视频未能接通（{message}），其他会议功能可继续使用。",
    "media.unavailable": "音视频服务暂不可用",
    "media.no_local": "未开启摄像头和麦克风",

    "ended.removed_title": "您已被移出会议",
    "ended.removed_text": "主持人已将您移出本次会议。",
    "ended.removed_reason": "原因：{reason}",
    "ended.replaced_title": "已在别处加入",
    "ended.replaced_text": "您已在其他窗口或设备上加入本次会议，此页面已断开。",
    "ended.session_title": "会议已结束",
    "ended.session_text": "本次协商会议已结束，感谢参加。",
    "ended.deleted_text": "本次会议已被组织者删除。",
    "ended.left_title": "您已离开会议",
    "ended.left_text": "可随时使用同一链接重新加入。",
    "ended.refused_title": "无法加入会议",
    "ended.disconnected_title": "连接已断开",
    "ended.disconnected_text": "服务器关闭了此页面的连接。",
    "ended.rejoin": "重新加入",

    "dialog.cancel": "取消",
    "dialog.confirm": "确定",

    "error.token_missing": "缺少参会凭证。",
    "error.token_invalid": "参会链接无效。",
    "error.token_expired": "参会链接已过期，请联系会务人员。",
    "error.room_not_found": "会议不存在或已被删除。",
    "error.session_ended": "会议已结束。",
    "error.removed": "主持人已将您移出本次会议。",
    "error.room_locked": "会议已锁定，暂不能进入。",
    "error.unknown_event": "服务器暂不支持此功能",
    "error.invalid_payload": "请求内容无效",
    "error.rate_limited": "操作过于频繁，请稍后再试",
    "error.not_joined": "尚未入会",
    "error.host_only": "仅主持人可以执行此操作",
    "error.forbidden": "您的身份不允许此操作",
    "error.unavailable": "会议服务器暂时无法连接，请稍后再试",
    "error.expired": "请求已超时，未被执行",
    "error.room_full": "会议人数已满。",
    "error.server_full": "服务器连接已满，请稍后再试。",
    "error.already_joined": "已在会议中",
    "error.not_connected": "连接已断开",
    "error.internal_error": "服务器内部错误",
    "error.already_has_floor": "您已拥有发言权",
    "error.queue_full": "发言申请已满",
    "error.participant_not_found": "该参会者已不在会议中",
    "error.cannot_speak": "旁听者不能获得发言权",
    "error.no_floor": "目前无人发言",
    "error.queue_empty": "没有发言申请",
    "error.agenda_out_of_range": "没有这一项议程",
    "error.no_agenda": "本次会议未设置议程",
    "error.cannot_remove_self": "不能移出自己",
    "error.publish_forbidden": "您的身份不能发布音视频",
    "error.bad_sdp": "媒体协商失败",
    "error.offline": "网络未连接",
    "error.timeout": "服务器无响应",
    "error.bad_state": "媒体协商状态不一致",
    "error.bad_candidate": "网络候选地址无效",
    "error.generic": "操作失败：{message}",
    "error.api_key_missing": "请输入 API 密钥",
    "error.host_not_at_main_venue": "主持人须安排在主会场",
    "error.unknown_venue": "会议没有这个会场",
    "error.api_key_invalid": "API 密钥无效",
    "error.network": "无法连接服务器",
    "error.identity_taken": "该标识已邀请为另一身份或会场的参会人员。",
    "error.too_many_attempts": "密钥错误次数过多，请稍后再试。",
    "error.ended": "会议已结束",
    "error.token_replaced": "此链接已被新的邀请取代，请使用最新的参会链接。",

    "org.page_title": "议堂 · 会务管理",
    "org.heading": "会务管理",
    "org.api_key": "API 密钥",
    "org.api_key_placeholder": "粘贴服务器的 API 密钥",
    "org.api_key_save": "使用此密钥",
    "org.api_key_note": "密钥只保存在本浏览器标签页中（sessionStorage）。",
    "org.rooms": "会议列表",
    "org.refresh": "刷新",
    "org.no_rooms": "暂无会议",
    "org.col_title": "会议",
    "org.col_start": "计划开始",
    "org.col_status": "状态",
    "org.col_people": "在线",
    "org.open": "管理",
    "org.status.scheduled": "未开始",
    "org.status.live": "进行中",
    "org.status.ended": "已结束",
    "org.create": "创建多级协商会议",
    "org.title": "会议名称",
    "org.topic": "协商主题",
    "org.start": "计划开始时间",
    "org.venues": "会场",
    "org.venue_id": "标识",
    "org.venue_name": "会场名称",
    "org.venue_level": "级别",
    "org.venue_main": "主会场",
    "org.add_venue": "添加会场",
    "org.remove_row": "删除",
    "org.agenda": "议程",
    "org.item_title": "议程事项",
    "org.item_speakers": "拟发言人（姓名或标识，逗号分隔）",
    "org.item_minutes": "分钟",
    "org.add_item": "添加议程",
    "org.submit": "创建会议",
    "org.created": "会议已创建：{title}",
    "org.room": "会议：{title}",
    "org.participants": "参会人员与邀请链接",
    "org.identity": "标识",
    "org.name": "姓名",
    "org.role": "身份",
    "org.venue": "会场",
    "org.issue": "生成邀请链接",
    "org.link": "邀请链接",
    "org.copy": "复制",
    "org.copied": "已复制",
    "org.copy_failed": "复制失败，请手动选择链接",
    "org.open_link": "打开",
    "org.roster_empty": "尚未邀请任何人",
    "org.need_key": "请先输入 API 密钥",
    "org.venue_id_hint": "小写字母、数字和连字符",
    "org.timezone": "时区",
    "org.link_expires": "有效期至 {time}",
    "org.link_expired": "已于 {time} 过期",
    "org.new_link": "生成新链接",
    "org.identity_taken": "标识 {identity} 已邀请为{role}「{name}」（{venue}）。改为{new_role}（{new_venue}）？此前发出的链接将失效。",
    "org.replace": "确认更改",
  },
  en: {
    "app.name": "Yitang",
    "app.tagline": "Multi-level video consultation",
    "lang.switch": "中文",
    "lang.switch_title": "切换到中文",

    "index.title": "Yitang · Multi-level video consultation",
    "index.intro": "Open the join link from your invitation to take part.",
    "index.organizer_link": "Organizer console",

    "level.national": "National",
    "level.provincial": "Provincial",
    "level.city": "City",
    "level.county": "County",
    "level_group.national": "National venues",
    "level_group.provincial": "Provincial venues",
    "level_group.city": "City venues",
    "level_group.county": "County venues",
    "role.host": "Host",
    "role.member": "Member",
    "role.guest": "Guest",
    "role.observer": "Observer",
    "venue.main": "Main venue",

    "join.page_title": "Yitang · Join",
    "prejoin.heading": "Join the consultation",
    "prejoin.who": "{name} · {role}",
    "prejoin.camera": "Camera",
    "prejoin.microphone": "Microphone",
    "prejoin.mic_level": "Microphone level",
    "prejoin.enter_mic_muted": "Enter with microphone off",
    "prejoin.enter_camera_off": "Enter with camera off",
    "prejoin.auto_unmute": "Open my microphone when I get the floor",
    "prejoin.enter": "Enter the session",
    "prejoin.entering": "Entering…",
    "prejoin.observer_note": "You are joining as an observer: you can watch and listen, but you do not publish, ask for the floor or chat.",
    "prejoin.camera_off_preview": "Camera off",
    "prejoin.no_devices": "No camera or microphone found. You can still enter, but you cannot speak.",
    "prejoin.device_error": "Cannot open camera or microphone: {message}",
    "prejoin.device_default": "Default device",
    "prejoin.device_none": "None",
    "prejoin.device_unnamed": "Device {n}",
    "prejoin.token_missing": "The link has no join token; use the full link from your invitation.",
    "prejoin.token_expired_local": "This join link looks expired; trying anyway.",
    "prejoin.checking": "Checking your join link…",
    "prejoin.recorded": "This session is being recorded: what you say and show will be kept in the session's archive.",
    "prejoin.locked": "The session is locked: you can enter when the host lets you in.",

    "conn.connecting": "Connecting",
    "conn.connected": "Connected",
    "conn.reconnecting": "Reconnecting",
    "conn.closed": "Disconnected",
    "conn.idle": "Not connected",
    "banner.reconnecting": "Connection lost, reconnecting…",
    "banner.reconnected": "Reconnected; the session view is up to date.",
    "banner.media_restarting": "Restoring audio and video…",
    "banner.media_restored": "Audio and video restored.",

    "rec.on": "Recording",
    "stage.speaking": "Has the floor",
    "stage.host": "Host",
    "stage.waiting_host": "Waiting for the host",
    "stage.countdown": "{time} left",
    "stage.you": " (you)",
    "tiles.empty": "No other participants yet",
    "tile.you": "You",
    "tile.mic_off": "Microphone off",
    "tile.camera_off": "Camera off",
    "tile.hand_raised": "Asked to speak",
    "tile.speaking": "Speaking",

    "quality.good": "Good connection",
    "quality.fair": "Fair connection",
    "quality.poor": "Poor connection",
    "quality.unknown": "Connection unknown",
    "quality.offline": "Offline",
    "quality.details": "loss {loss}% · RTT {rtt} ms · {fps} fps",

    "tabs.label": "Session panels",
    "tabs.agenda": "Agenda",
    "tabs.queue": "Floor",
    "tabs.people": "People",
    "tabs.chat": "Chat",

    "agenda.empty": "This session has no agenda",
    "agenda.current": "Current item",
    "agenda.planned": "Planned: {names}",
    "list.separator": ", ",
    "agenda.duration": "{minutes} min",
    "agenda.go": "Go to item",

    "queue.floor": "Has the floor",
    "queue.nobody": "Nobody has the floor; the host leads",
    "queue.heading": "Requests to speak (in order)",
    "queue.empty": "No requests to speak",
    "queue.untimed": "untimed",
    "queue.grant": "Give floor",
    "queue.skip": "Skip",
    "queue.position": "#{n}",

    "people.heading": "Participants",
    "people.count": "{n} online",
    "people.absent": "not joined",
    "people.connected": "online",
    "people.mute_audio": "Ask to mute",
    "people.mute_video": "Ask to turn camera off",
    "people.remove": "Remove",
    "people.grant": "Give floor",
    "people.you": " (you)",

    "chat.empty": "No messages yet",
    "chat.placeholder": "Type a message, Enter to send",
    "chat.send": "Send",
    "chat.readonly": "Observers cannot send messages",
    "chat.label": "Chat messages",

    "event.joined": "{name} joined",
    "event.left": "{name} left",
    "event.hand_raised": "{name} asked to speak",
    "event.floor_granted": "{name} was given the floor",
    "event.floor_revoked": "{name}'s turn ended",
    "event.floor_expired": "{name}'s time is up",
    "event.agenda_advanced": "Agenda: {title}",
    "event.locked": "The session was locked",
    "event.unlocked": "The session was unlocked",
    "event.session_ended": "The session ended",

    "host.console": "Host console",
    "host.time_limit": "Time limit",
    "host.limit_none": "No limit",
    "host.limit_minutes": "{n} min",
    "host.next_speaker": "Next speaker",
    "host.revoke": "Take back floor",
    "host.next_item": "Next agenda item",
    "host.lock": "Lock session",
    "host.unlock": "Unlock session",
    "host.locked_note": "Locked: newcomers cannot enter",
    "host.end": "End session",
    "host.record_start": "Start recording",
    "host.record_stop": "Stop recording",
    "host.record_started": "Recording started",
    "host.record_stopped": "Recording stopped; the session video is being made",
    "host.record_failed": "Recording failed (the session goes on): {error}",
    "event.recording_started": "Recording started",
    "event.recording_resumed": "Recording resumed (after a server change)",
    "host.record_resumed": "The session moved to another server; recording goes on (the moments in between are missing)",
    "event.recording_stopped": "Recording stopped",
    "event.recording_failed": "Recording failed",
    "error.already_recording": "Already recording.",
    "error.not_recording": "Not recording.",
    "error.archive_unwritable": "The archive folder cannot be written; recording did not start.",
    "error.no_media": "No audio or video yet; recording cannot start.",
    "host.end_confirm_title": "End the session",
    "host.end_confirm_text": "End this session for every participant? This cannot be undone.",
    "host.remove_confirm_title": "Remove participant",
    "host.remove_confirm_text": "Remove {name} from this session? They cannot come back to it.",
    "host.floor_status": "Floor: {name}",
    "host.floor_none": "Floor: nobody (host)",
    "host.granted": "{name} has the floor",
    "host.mute_sent": "Asked {name} to turn off the {kind}",
    "host.removed_done": "{name} was removed",
    "kind.audio": "microphone",
    "kind.video": "camera",

    "controls.label": "Session controls",
    "controls.mic_on": "Mute microphone",
    "controls.mic_off": "Unmute microphone",
    "controls.cam_on": "Turn camera off",
    "controls.cam_off": "Turn camera on",
    "controls.raise_hand": "Ask to speak",
    "controls.lower_hand": "Withdraw request",
    "controls.yield": "End my turn",
    "controls.leave": "Leave",
    "controls.auto_unmute": "Open my microphone when I get the floor",
    "controls.observer": "Observer mode",
    "controls.more": "More",

    "floor.you_have": "You have the floor",
    "floor.you_have_mic": "You have the floor; your microphone is on",
    "floor.you_have_hint": "You have the floor; turn on your microphone to speak",
    "floor.ended": "Your turn has ended",
    "floor.countdown": "{time} left",
    "floor.untimed": "untimed",

    "mute.requested_audio": "The host asked you to mute; your microphone is now off.",
    "mute.requested_video": "The host asked you to turn off your camera; it is now off.",

    "media.publish_failed": "Audio/video could not connect ({message}); the other session features keep working.",
    "media.unavailable": "Audio/video service unavailable",
    "media.no_local": "Camera and microphone not in use",

    "ended.removed_title": "You were removed",
    "ended.removed_text": "The host removed you from this session.",
    "ended.removed_reason": "Reason: {reason}",
    "ended.replaced_title": "Joined elsewhere",
    "ended.replaced_text": "You joined this session from another window or device, so this page was disconnected.",
    "ended.session_title": "The session has ended",
    "ended.session_text": "This consultation session is over. Thank you for taking part.",
    "ended.deleted_text": "The organizer deleted this session.",
    "ended.left_title": "You left the session",
    "ended.left_text": "You can rejoin at any time with the same link.",
    "ended.refused_title": "Cannot join the session",
    "ended.disconnected_title": "Disconnected",
    "ended.disconnected_text": "The server closed this page's connection.",
    "ended.rejoin": "Rejoin",

    "dialog.cancel": "Cancel",
    "dialog.confirm": "Confirm",

    "error.token_missing": "The join token is missing.",
    "error.token_invalid": "This join link is not valid.",
    "error.token_expired": "This join link has expired; contact the organizers.",
    "error.room_not_found": "This session does not exist or was deleted.",
    "error.session_ended": "The session has ended.",
    "error.removed": "The host removed you from this session.",
    "error.room_locked": "The session is locked; you cannot enter now.",
    "error.unknown_event": "The server does not support this yet",
    "error.invalid_payload": "Invalid request",
    "error.rate_limited": "Too many actions; try again shortly",
    "error.not_joined": "Not in the session",
    "error.host_only": "Only the host can do this",
    "error.forbidden": "Your role does not allow this",
    "error.unavailable": "The session's server cannot be reached now; try again shortly",
    "error.expired": "The request came too late and was not carried out",
    "error.room_full": "The session is full.",
    "error.server_full": "This server is full; try again shortly.",
    "error.already_joined": "Already in the session",
    "error.not_connected": "Not connected",
    "error.internal_error": "Server error",
    "error.already_has_floor": "You already have the floor",
    "error.queue_full": "The queue is full",
    "error.participant_not_found": "That participant is no longer here",
    "error.cannot_speak": "Observers cannot be given the floor",
    "error.no_floor": "Nobody has the floor",
    "error.queue_empty": "Nobody is waiting to speak",
    "error.agenda_out_of_range": "No such agenda item",
    "error.no_agenda": "This session has no agenda",
    "error.cannot_remove_self": "You cannot remove yourself",
    "error.publish_forbidden": "Your role cannot publish audio/video",
    "error.bad_sdp": "Media negotiation failed",
    "error.offline": "Not connected",
    "error.timeout": "The server did not answer",
    "error.bad_state": "Media negotiation out of step",
    "error.bad_candidate": "Invalid network candidate",
    "error.generic": "Failed: {message}",
    "error.api_key_missing": "Enter the API key",
    "error.host_not_at_main_venue": "The host must sit at the main venue",
    "error.unknown_venue": "The session has no such venue",
    "error.api_key_invalid": "The API key is not valid",
    "error.network": "Cannot reach the server",
    "error.identity_taken": "This id is already invited with another role or venue.",
    "error.too_many_attempts": "Too many wrong keys; try again shortly.",
    "error.ended": "The session is over",
    "error.token_replaced": "This link was replaced by a newer invitation; use the latest link.",

    "org.page_title": "Yitang · Organizer",
    "org.heading": "Organizer",
    "org.api_key": "API key",
    "org.api_key_placeholder": "Paste the server's API key",
    "org.api_key_save": "Use this key",
    "org.api_key_note": "The key is kept only in this browser tab (sessionStorage).",
    "org.rooms": "Sessions",
    "org.refresh": "Refresh",
    "org.no_rooms": "No sessions yet",
    "org.col_title": "Session",
    "org.col_start": "Scheduled",
    "org.col_status": "Status",
    "org.col_people": "Online",
    "org.open": "Manage",
    "org.status.scheduled": "Scheduled",
    "org.status.live": "Live",
    "org.status.ended": "Ended",
    "org.create": "Create a multi-level session",
    "org.title": "Title",
    "org.topic": "Topic",
    "org.start": "Scheduled start",
    "org.venues": "Venues",
    "org.venue_id": "Id",
    "org.venue_name": "Venue name",
    "org.venue_level": "Level",
    "org.venue_main": "Main",
    "org.add_venue": "Add venue",
    "org.remove_row": "Remove",
    "org.agenda": "Agenda",
    "org.item_title": "Item",
    "org.item_speakers": "Planned speakers (names or ids, comma-separated)",
    "org.item_minutes": "Minutes",
    "org.add_item": "Add item",
    "org.submit": "Create session",
    "org.created": "Session created: {title}",
    "org.room": "Session: {title}",
    "org.participants": "Participants and invitation links",
    "org.identity": "Id",
    "org.name": "Name",
    "org.role": "Role",
    "org.venue": "Venue",
    "org.issue": "Create invitation link",
    "org.link": "Invitation link",
    "org.copy": "Copy",
    "org.copied": "Copied",
    "org.copy_failed": "Copy failed; select the link by hand",
    "org.open_link": "Open",
    "org.roster_empty": "Nobody invited yet",
    "org.need_key": "Enter the API key first",
    "org.venue_id_hint": "lowercase letters, digits and hyphens",
    "org.timezone": "Time zone",
    "org.link_expires": "valid until {time}",
    "org.link_expired": "expired {time}",
    "org.new_link": "New link",
    "org.identity_taken": "{identity} is already invited as {role} \"{name}\" ({venue}). Change to {new_role} ({new_venue})? Links issued before stop working.",
    "org.replace": "Change",
  },
};

let current = readStoredLang();
const listeners = new Set();

function readStoredLang() {
  try {
    const stored = localStorage.getItem(STORAGE_KEY);
    if (LANGS.includes(stored)) return stored;
  } catch {
    /* storage disabled: default language */
  }
  return "zh";
}

/** The current language ("zh" or "en"). */
export function getLang() {
  return current;
}

/** Whether a key exists (in the current language). */
export function has(key) {
  return key in STRINGS[current];
}

/** The string for `key` in the current language, with {name} placeholders filled. */
export function t(key, params = {}) {
  let text = STRINGS[current][key];
  if (text === undefined) {
    console.warn(`i18n: missing key ${key}`);
    text = STRINGS.zh[key] ?? key;
  }
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m));
}

/** A user-facing message for a server error code, else the server's own message. */
export function errorText(code, message) {
  const key = `error.${code}`;
  if (key in STRINGS[current]) return t(key);
  return t("error.generic", { message: message || code });
}

/** Switch language, remember it, re-translate the document and tell listeners. */
export function setLang(lang) {
  if (!LANGS.includes(lang) || lang === current) return;
  current = lang;
  try {
    localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    /* not remembered */
  }
  applyI18n(document);
  for (const fn of [...listeners]) fn(lang);
}

/** Call `fn(lang)` after every language change. */
export function onLangChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** Fill every data-i18n* attribute under `root`. */
export function applyI18n(root = document) {
  document.documentElement.lang = current === "zh" ? "zh-CN" : "en";
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of root.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
  for (const el of root.querySelectorAll("[data-i18n-aria-label]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nAriaLabel));
  }
}

/** Make `button` the language switch (its label names the other language). */
export function mountLangSwitch(button) {
  const render = () => {
    button.textContent = t("lang.switch");
    button.title = t("lang.switch_title");
    button.dataset.lang = current;
  };
  button.addEventListener("click", () => setLang(current === "zh" ? "en" : "zh"));
  onLangChange(render);
  render();
}

/** Label of a venue level ("national" → 全国 / National). */
export function levelLabel(level) {
  return has(`level.${level}`) ? t(`level.${level}`) : level;
}

/** Label of a role. */
export function roleLabel(role) {
  return has(`role.${role}`) ? t(`role.${role}`) : role;
}

/** For tests and tooling: every key of every language. */
export function allKeys() {
  return Object.fromEntries(LANGS.map((lang) => [lang, Object.keys(STRINGS[lang])]));
}
